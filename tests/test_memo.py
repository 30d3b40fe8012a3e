"""Work done once for a comparison: computed by the first caller, read by every other,
including one that asks while the first is still computing."""

import threading
import time

from fewlabels import memo


def test_a_result_is_computed_once_and_read_after(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"graph": [1, 2, 3]}

    assert memo.computed_once(tmp_path, lambda: "k", compute) == {"graph": [1, 2, 3]}
    assert memo.computed_once(tmp_path, lambda: "k", compute) == {"graph": [1, 2, 3]}
    assert len(calls) == 1
    memo.computed_once(tmp_path, lambda: "other", compute)  # another key is another result
    assert len(calls) == 2


def test_without_a_folder_each_call_computes():
    calls = []
    for _ in range(2):
        memo.computed_once(None, lambda: 1 / 0, lambda: calls.append(1))  # no key computed
    assert len(calls) == 2


def test_a_second_caller_waits_for_the_first_rather_than_computing(tmp_path):
    calls, got = [], []

    def slow():
        calls.append("slow")
        time.sleep(0.5)
        return 41

    first = threading.Thread(
        target=lambda: got.append(memo.computed_once(tmp_path, lambda: "k", slow)))
    first.start()
    time.sleep(0.1)  # the first holds the lock now
    got.append(memo.computed_once(tmp_path, lambda: "k", lambda: calls.append("second") or 42))
    first.join()
    assert calls == ["slow"] and got == [41, 41]
