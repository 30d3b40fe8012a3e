"""The run list: every run of a comparison, planned as plain data before anything runs."""

from fewlabels.plan import PlannedRun, longest_first, plan_runs


def _plan(**kw):
    args = dict(datasets=["mnist"], budgets={"mnist": [100, 600]},
                train_sizes={"mnist": 60000}, seeds=[0, 1],
                arms=["ceiling", "probe", "supervised"], pretrain_seeds=[0, 1], tune=False)
    return plan_runs(**{**args, **kw})


def test_each_arm_runs_once_per_draw_and_pretraining_run_the_ceiling_once():
    runs = _plan()
    # per budget and draw: probe on each of 2 pretraining runs, supervised once
    assert len(runs) == 2 * 2 * (2 + 1) + 1
    assert runs[0] == PlannedRun("mnist", "probe", 100, 0, 0)
    assert runs[2] == PlannedRun("mnist", "supervised", 100, 0, None)
    assert runs[-1] == PlannedRun("mnist", "ceiling", 60000, 0, None)  # last, first draw
    assert len({r.key() for r in runs}) == len(runs)


def test_tuned_runs_follow_their_draw_and_carry_their_own_name():
    runs = _plan(tune=True, arms=["supervised", "pixels-knn"], budgets={"mnist": [100]})
    assert [r.name for r in runs[:4]] == ["supervised", "pixels-knn", "supervised-tuned",
                                          "pixels-knn-tuned"]
    assert runs[2].key() == ("mnist", "supervised-tuned", 100, 0, None)


def test_workers_claim_the_longest_runs_first_and_keep_the_plans_order_within_an_arm():
    runs = _plan(tune=True, arms=["pixels-knn", "probe", "semisupervised", "ceiling"],
                 pretrain_seeds=[0])
    order = longest_first(runs)
    assert sorted(map(PlannedRun.key, order)) == sorted(map(PlannedRun.key, runs))
    names = [r.name for r in order]
    tuned = [n for n in names if n.endswith("-tuned")]
    assert names[:len(tuned)] == tuned  # N trainings each: first
    rest = names[len(tuned):]
    assert rest[0] == "ceiling" and rest[1:5] == ["semisupervised"] * 4
    assert set(rest[5:]) == {"probe", "pixels-knn"}  # not among the longest: last
    assert [r.name for r in runs if r.name in ("probe", "pixels-knn")] == rest[5:]  # in order
    assert [r.seed for r in order if r.name == "probe"] == [0, 1, 0, 1]


def test_each_datasets_first_label_spreading_run_builds_its_graph_early():
    runs = _plan(datasets=["mnist", "fashion-mnist"],
                 budgets={"mnist": [100, 600], "fashion-mnist": [600]},
                 train_sizes={"mnist": 60000, "fashion-mnist": 60000}, seeds=[0, 1, 2],
                 arms=["semisupervised", "supervised", "pixels-labelspreading"],
                 pretrain_seeds=[0])
    order = [(r.dataset, r.arm, r.labels, r.seed) for r in longest_first(runs)]
    semi = sum(1 for o in order if o[1] == "semisupervised")
    assert all(o[1] == "semisupervised" for o in order[:semi])
    # then one label-spreading run a dataset (the first in plan order), then the rest
    assert order[semi:semi + 2] == [("mnist", "pixels-labelspreading", 100, 0),
                                    ("fashion-mnist", "pixels-labelspreading", 600, 0)]
    assert all(o[1] == "supervised" for o in order[semi + 2:semi + 2 + 9])
    spreading = order[semi + 2 + 9:]
    assert len(spreading) == 7 and {o[1] for o in spreading} == {"pixels-labelspreading"}


def test_a_run_is_claimed_by_one_worker_only(tmp_path):
    from fewlabels.parallel import claim

    key = ("mnist", "probe", 100, 0, None)
    assert claim(tmp_path, key) and not claim(tmp_path, key)
    assert claim(tmp_path, ("mnist", "probe", 100, 1, None))
    assert len(list((tmp_path / "claims").iterdir())) == 2


def test_each_further_label_sampling_repeats_the_drawn_arms_under_its_name():
    runs = _plan(arms=["ceiling", "supervised"], pretrain_seeds=[0],
                 samplings=("random", "typical"))
    names = [r.name for r in runs if r.labels == 100 and r.seed == 0]
    assert names == ["supervised", "supervised@typical"]
    assert [r.name for r in runs].count("ceiling") == 1  # every-label arms: once, unsampled
    assert len({r.key() for r in runs}) == len(runs)
