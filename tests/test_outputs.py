"""Output paths checked before any work, and one writer at a time in a run folder."""

import os
import subprocess
import sys

import pytest

from fewlabels.errors import UsageError
from fewlabels.outputs import LOCK, check_output_file, run_folder_lock


def test_an_output_file_is_checked_before_any_work(tmp_path):
    assert check_output_file(tmp_path / "m.model", "--out") == tmp_path / "m.model"
    with pytest.raises(UsageError, match="is a folder: give a file name"):
        check_output_file(tmp_path, "--out")
    (tmp_path / "m.model").write_bytes(b"kept")
    with pytest.raises(UsageError, match="exists: pass --force to replace it"):
        check_output_file(tmp_path / "m.model", "--out")
    check_output_file(tmp_path / "m.model", "--out", force=True)
    assert (tmp_path / "m.model").read_bytes() == b"kept"  # checked, not touched
    with pytest.raises(UsageError, match="does not exist or is not a folder"):
        check_output_file(tmp_path / "missing" / "m.model", "--out")
    with pytest.raises(UsageError, match=r"cannot be a file \(Not a directory\)"):
        check_output_file(tmp_path / "m.model" / "x.model", "--out")  # under a file


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(UsageError, match="is not writable"):
        check_output_file(ro / "m.model", "--out")


HOLD = """
import sys, time
from pathlib import Path
from fewlabels.outputs import run_folder_lock
from fewlabels.errors import UsageError
try:
    with run_folder_lock(Path(sys.argv[1])):
        print("held", flush=True)
        end = time.time() + 60
        while not Path(sys.argv[2]).exists() and time.time() < end:  # until told to let go
            time.sleep(0.05)
except UsageError:
    print("refused", flush=True)
"""


def test_a_run_folder_has_one_writer_and_a_killed_one_is_taken_over(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "never"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=f"being written by process {other.pid}"), \
                run_folder_lock(tmp_path):
            pass
    finally:
        other.kill()  # SIGKILL: no clean-up runs, its lock file stays with its pid
        other.wait()
    assert (tmp_path / LOCK).read_text() == str(other.pid)
    with run_folder_lock(tmp_path):  # the kernel let go of the killed holder's lock
        assert (tmp_path / LOCK).read_text() == str(os.getpid())
        with run_folder_lock(tmp_path):  # the same process again: allowed
            pass
        assert (tmp_path / LOCK).exists()
    assert not (tmp_path / LOCK).exists()


def test_of_runs_started_at_once_on_one_folder_exactly_one_writes(tmp_path):
    """The race the first lock lost: a lock file created but not yet holding its pid was
    read as stale by a second process, and both ran."""
    run, release = tmp_path / "run", tmp_path / "release"
    run.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(run), str(release)],
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]
    answers = [p.stdout.readline().strip() for p in procs]  # each has answered
    release.touch()
    for p in procs:
        p.wait(timeout=60)
    assert sorted(answers) == ["held"] + ["refused"] * 5
