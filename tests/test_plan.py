"""The run list: every run of a comparison, planned as plain data before anything runs."""

from fewlabels.plan import PlannedRun, plan_runs, shard_of


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


def test_workers_split_the_plan_between_them_without_overlap():
    runs = _plan(tune=True)
    parts = [shard_of(runs, (i, 3)) for i in range(3)]
    assert sorted(map(len, parts)) == [len(runs) // 3] * (3 - len(runs) % 3) + \
        [len(runs) // 3 + 1] * (len(runs) % 3)
    together = [r.key() for p in parts for r in p]
    assert len(together) == len(runs) and set(together) == {r.key() for r in runs}
    assert shard_of(runs, None) == runs


def test_each_further_label_sampling_repeats_the_drawn_arms_under_its_name():
    runs = _plan(arms=["ceiling", "supervised"], pretrain_seeds=[0],
                 samplings=("random", "typical"))
    names = [r.name for r in runs if r.labels == 100 and r.seed == 0]
    assert names == ["supervised", "supervised@typical"]
    assert [r.name for r in runs].count("ceiling") == 1  # every-label arms: once, unsampled
    assert len({r.key() for r in runs}) == len(runs)
