"""Sharing the CPU: one thread while other processes crowd it, back when they leave."""

import pytest
import torch

from fewlabels import sharing
from fewlabels.sharing import ThreadShare, others_busy


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
    sharing._last["crowded"] = False  # what a test's looks found stays in the test


def test_a_phase_that_starts_after_a_crowded_look_starts_on_one_thread(two_threads,
                                                                       monkeypatch):
    monkeypatch.delenv("FEWLABELS_SHARE", raising=False)
    now = [0.0]
    loads = iter([None, 1.5])
    first = ThreadShare(sample=lambda: next(loads), interval=5, clock=lambda: now[0])
    now[0] = 5.0
    first()
    assert torch.get_num_threads() == 1
    first.restore()  # the phase ends: back to its threads ...
    assert torch.get_num_threads() == 2
    loads = iter([None, 0.1])
    second = ThreadShare(sample=lambda: next(loads), interval=5, clock=lambda: now[0])
    assert torch.get_num_threads() == 1  # ... and the next starts where the last look left it
    now[0] = 10.0
    second()  # its own look finds the CPUs clear: back to two
    assert torch.get_num_threads() == 2 and second.changes == [(0.1, 2)]
    second.restore()
    third = ThreadShare(sample=lambda: None, interval=5, clock=lambda: now[0])
    assert torch.get_num_threads() == 2  # the last look was clear
    third.restore()


def test_crowded_then_clear_goes_to_one_thread_and_back(two_threads, monkeypatch):
    monkeypatch.delenv("FEWLABELS_SHARE", raising=False)
    loads = iter([None, 0.1, 0.9, 0.4, 0.1])  # first look, alone, crowded, between, clear
    clock = iter(range(0, 1000, 10))
    share = ThreadShare(sample=lambda: next(loads), interval=5, clock=lambda: next(clock))
    seen = []
    for _ in range(4):
        share()
        seen.append(torch.get_num_threads())
    assert seen == [2, 1, 1, 2]  # between the two marks it keeps what it has
    assert share.changes == [(0.9, 1), (0.1, 2)]


def test_each_time_it_gives_way_is_counted_for_results_json(two_threads, monkeypatch):
    from fewlabels.runtime import environment, resolve

    monkeypatch.delenv("FEWLABELS_SHARE", raising=False)
    monkeypatch.setitem(sharing._last, "lowered", 0)
    now = [0.0]
    loads = iter([None, 0.9, 0.1, 0.9])
    share = ThreadShare(sample=lambda: next(loads), interval=5, clock=lambda: now[0])
    for t in (5.0, 10.0, 15.0):  # crowded, clear, crowded: down twice
        now[0] = t
        share()
    share.restore()
    assert sharing.times_lowered() == 2
    later = ThreadShare(sample=lambda: None, interval=5, clock=lambda: now[0])  # starts crowded
    later.restore()
    assert sharing.times_lowered() == 3
    assert environment(resolve("cpu", "fp32"))["threads_lowered"] == 3
    # a run that began after the first two counts only its own
    assert environment(resolve("cpu", "fp32"), lowered_before=2)["threads_lowered"] == 1


def test_a_comparison_records_only_its_own_times(monkeypatch, tmp_path, mnist):
    """The count is the process's: a comparison after another in one process (the Python
    API, a notebook) records the times it gave way, not the earlier run's."""
    import dataclasses

    from fewlabels.config import load_preset
    from fewlabels.experiment import compare

    monkeypatch.setitem(sharing._last, "lowered", 4)  # an earlier run in this process
    small = dataclasses.replace(mnist.subset(train=500, test=100), name="mnist")
    cfg = load_preset("default", {"labels": ["20"], "seeds": [0], "arms": ["pixels-knn"]})
    results = compare(cfg, tmp_path / "run", datasets={"mnist": small}, log=lambda line: None)
    assert results["environment"]["threads_lowered"] == 0


def test_it_looks_only_every_interval_and_restores_at_the_end(two_threads, monkeypatch):
    monkeypatch.delenv("FEWLABELS_SHARE", raising=False)
    calls = []

    def sample():
        calls.append(1)
        return 2.0

    now = [0.0]
    share = ThreadShare(sample=sample, interval=5, clock=lambda: now[0])
    for t in (0.0, 1.0, 4.9):
        now[0] = t
        share()
    # the look that opens the window, and no decision before a whole interval has passed
    assert len(calls) == 1 and torch.get_num_threads() == 2
    for t in (5.0, 6.0):
        now[0] = t
        share()
    assert len(calls) == 2  # then one at 5 s
    assert torch.get_num_threads() == 1
    share.restore()
    assert torch.get_num_threads() == 2


def test_it_can_be_turned_off(two_threads, monkeypatch):
    monkeypatch.setenv("FEWLABELS_SHARE", "0")
    share = ThreadShare(sample=lambda: 2.0, interval=0, clock=lambda: 0.0)
    share()
    assert torch.get_num_threads() == 2 and share.sample is None


def test_the_sampler_counts_other_processes_not_this_one():
    import os

    sample = others_busy(os.sched_getaffinity(0))
    assert sample() is None  # the first call opens the window
    x = torch.randn(400, 400)
    for _ in range(200):  # this process's own work
        x @ x
    load = sample()
    assert load is not None and 0 <= load <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["abc", "2", "yes"])
def test_a_share_setting_other_than_0_or_1_is_refused(monkeypatch, value):
    from fewlabels.errors import UsageError
    from fewlabels.sharing import sharing_enabled

    monkeypatch.setenv("FEWLABELS_SHARE", value)
    with pytest.raises(UsageError, match=f"FEWLABELS_SHARE={value!r} is not 0 or 1"):
        sharing_enabled()
    for value, enabled in (("0", False), ("1", True)):
        monkeypatch.setenv("FEWLABELS_SHARE", value)
        assert sharing_enabled() is enabled
