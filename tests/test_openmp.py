import os
import subprocess
import sys
import time

from fewlabels import openmp


def test_busy_cpus_counts_another_process_and_stays_in_range():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        seen = openmp.busy_cpus(0.3)
    finally:
        busy.kill()
        busy.wait()
    assert seen is not None and 0.5 <= seen <= len(os.sched_getaffinity(0)) + 0.01


def test_sleeping_threads_when_busy_and_the_users_choice_is_kept(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")  # as at import time, before torch loads
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("FEWLABELS_THREADS", raising=False)
    monkeypatch.setattr(openmp, "busy_cpus", lambda: 1.0)
    assert openmp.choose_wait_policy() == "PASSIVE" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(openmp, "busy_cpus", lambda: 0.2)  # a little noise: not busy
    assert openmp.choose_wait_policy() is None and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr(openmp, "busy_cpus", lambda: 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread: no barrier to wait at
    assert openmp.choose_wait_policy() is None and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(openmp, "busy_cpus", lambda: 2.0)
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")  # the user's choice
    assert openmp.choose_wait_policy() is None and "OMP_WAIT_POLICY" not in os.environ


def test_too_late_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(openmp, "busy_cpus", lambda: 2.0)
    assert openmp.choose_wait_policy() is None and "OMP_WAIT_POLICY" not in os.environ


def test_the_command_line_chooses_it_before_torch_loads():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
                        "FEWLABELS_THREADS")}
    try:
        time.sleep(0.3)
        out = subprocess.run([sys.executable, "-c", "import os, fewlabels, torch; "
                              "print(os.environ.get('OMP_WAIT_POLICY'))"],
                             env=env, capture_output=True, text=True, check=True)
    finally:
        busy.kill()
        busy.wait()
    assert out.stdout.strip() == "PASSIVE"
