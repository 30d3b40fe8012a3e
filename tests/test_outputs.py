"""Output paths checked before any work, and one writer at a time in a run folder."""

import os
import stat

import pytest

from fewlabels.checkpoint import atomic_write_bytes
from fewlabels.errors import UsageError
from fewlabels.outputs import (
    BESIDE_BYTES,
    LOCK,
    check_output_file,
    name_limit,
    output_file_lock,
    run_folder_lock,
)
from lock_holder import start_holder


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


def test_a_device_or_a_pipe_is_never_replaced_by_an_output(tmp_path):
    """An atomic write renames a whole file into place: onto /dev/null (as root) that made
    the device a regular file. Devices, pipes and sockets are refused, --force or not,
    before any work and at the write itself."""
    pipe = tmp_path / "features.npy"
    os.mkfifo(pipe)
    for path, kind in (("/dev/null", "a character device"), (pipe, "a named pipe")):
        with pytest.raises(UsageError, match=f"is {kind}, not a file: .* give a file path"):
            check_output_file(path, "--out", force=True)
    with pytest.raises(UsageError, match="is a named pipe, not a file"):
        atomic_write_bytes(pipe, b"data")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]  # no temp left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(UsageError, match="is not writable"):
        check_output_file(ro / "m.model", "--out")




def test_a_run_folder_has_one_writer_and_a_killed_one_is_taken_over(tmp_path):
    other = start_holder(tmp_path, tmp_path / "never")
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
    procs = [start_holder(run, release) for _ in range(6)]
    answers = [p.stdout.readline().strip() for p in procs]  # each has answered
    release.touch()
    for p in procs:
        p.wait(timeout=60)
    assert sorted(answers) == ["held"] + ["refused"] * 5


def test_a_name_leaves_room_for_the_files_written_beside_it(tmp_path):
    """A name the file system takes, but whose temporary file or pretraining state it would
    not, is refused before any work: not after hours of training, at the write."""
    room = name_limit(tmp_path) - BESIDE_BYTES
    with pytest.raises(UsageError, match=f"bytes long, more than {room}"):
        check_output_file(tmp_path / ("a" * (room - 5) + ".model!"), "--out")
    longest = tmp_path / ("b" * (room - 6) + ".model")
    check_output_file(longest, "--out")
    state = longest.with_name(f"{longest.name}.pretraining-state")
    for path in (longest, state):  # each written whole under its temporary name
        atomic_write_bytes(path, b"data")
        assert path.read_bytes() == b"data"


def test_a_model_file_has_one_writer(tmp_path):
    model = tmp_path / "m.model"
    other = start_holder(model, tmp_path / "never", kind="file")
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=f"being written by process {other.pid}.*another "
                                             "--out$"), output_file_lock(model):
            pass
    finally:
        other.kill()
        other.wait()
    with output_file_lock(model):  # a killed holder's lock is taken over
        assert (tmp_path / "m.model.lock").read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == []
