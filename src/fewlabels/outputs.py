"""Where results go, checked before any work starts: an output file that can be written
and replaces nothing by surprise, and a run folder or model file that one process at a
time writes (a lock naming the process that holds it; a lock left by a killed process is
taken over)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from pathlib import Path

from .errors import UsageError

LOCK = ".lock"  # in a run folder: the process id of the run writing it
MIN_FREE_BYTES = 64 * 2**20  # a model file and its state fit in far less


def temporary_path(path: Path, pid: int | None = None) -> Path:
    """Where an output is written whole before it is renamed into place (``.NAME.tmp-PID``,
    this process's id unless ``pid``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid() if pid is None else pid}")


def pretraining_state_path(model: str | Path) -> Path:
    """Beside ``fit``'s model file, its pretraining state: an interrupted fit resumes there."""
    return Path(f"{model}.pretraining-state")


# the most bytes a name written beside an output adds to the output's own name: ``fit``'s
# pretraining state written whole under its temporary name (a process id: 7 digits at most)
BESIDE_BYTES = len(temporary_path(pretraining_state_path("m"), pid=9_999_999).name) - len("m")


def name_limit(folder: str | Path) -> int:
    """The most bytes a file name may hold in ``folder`` (its nearest folder that exists:
    the file system's own limit), 255 where that cannot be read."""
    folder = Path(folder).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_not_special(path: str | Path, what: str = "") -> None:
    """Refuse ``path`` when it exists as something a rename would replace that is no regular
    file or folder (a device such as /dev/null, a pipe, a socket): every output is written
    whole and renamed into place. ``what`` names the option, when there is one."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), None)
    if kind:
        raise UsageError(f"{what + ' ' if what else ''}{str(path)!r} is {kind}, not a file: "
                         "fewlabels writes a whole file and renames it into place, which "
                         "would replace it; give a file path")


def check_output_file(path: str | Path, what: str, force: bool = False,
                      example: str = "model.model") -> Path:
    """``path`` as a file to write later: refused now if it is a folder, if its folder is
    missing, is not a folder, is not writable or nearly full, or if it exists (unless
    ``force``), so that hours of training never end in a file that cannot be written."""
    if "\0" in str(path):
        raise UsageError(f"{what} {str(path)!r} holds a NUL character, which no file name may "
                         "hold: choose another name")
    path = Path(path)
    try:
        found = os.stat(path)
    except FileNotFoundError:
        found = None
    except OSError as e:  # a name too long, a loop of links, a component that is a file
        raise UsageError(f"{what} {str(path)!r} cannot be a file ({e.strerror}): choose "
                         "another path") from None
    parent = path.parent  # "." for a bare name
    name_max = name_limit(parent) - BESIDE_BYTES
    if len(os.fsencode(path.name)) > name_max:
        raise UsageError(f"{what}: the file name {path.name[:40]!r}... is "
                         f"{len(os.fsencode(path.name))} bytes long, more than {name_max}: "
                         f"files written beside it add up to {BESIDE_BYTES} bytes to its name, "
                         f"and this file system allows {name_max + BESIDE_BYTES}; choose a "
                         "shorter name")
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise UsageError(f"{what} {str(path)!r} is a folder: give a file name, e.g. "
                         f"{str(path / example)!r}")
    check_not_special(path, what)
    if found is not None and not force:
        raise UsageError(f"{what} {str(path)!r} exists: pass --force to replace it, or "
                         "choose another name")
    if not parent.is_dir():
        raise UsageError(f"{what} {str(path)!r}: its folder {str(parent)!r} does not exist "
                         "or is not a folder: create it or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(path)!r}: its folder {str(parent)!r} is not writable: "
                         "fix the permissions or choose another path")
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:
        raise UsageError(f"{what} {str(path)!r}: only {free / 2**20:.0f} MiB free in "
                         f"{str(parent)!r}, at least {MIN_FREE_BYTES / 2**20:.0f} MiB are "
                         "needed: free some space or choose another path")
    return path


def _holder(lock: Path) -> int:
    """The process id written in ``lock`` (0: none yet, or unreadable)."""
    try:
        return int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


_held: set[Path] = set()  # the locks this process holds


def _take(lock: Path) -> int | None:
    """A descriptor holding the kernel's lock on the file ``lock`` (the kernel lets go when
    the process ends, however it ends: a lock left by a killed run is free at once), or None
    when another process holds it."""
    for _ in range(10):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the file may have been removed by its last holder while we waited on it
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise UsageError(f"{str(lock)!r} could not be taken: remove it if no run is writing "
                     "beside it")


@contextlib.contextmanager
def run_folder_lock(folder: Path):
    """Hold ``folder``'s lock while the block runs; refuse with one line when another live
    process holds it. Taking it again in the process that holds it is a no-op."""
    with _lock((Path(folder) / LOCK).absolute(), folder, "choose another --out folder"):
        yield


@contextlib.contextmanager
def output_file_lock(path: Path):
    """Hold the lock of the output file ``path`` (``<path>.lock`` beside it) while the block
    runs, as ``run_folder_lock`` does for a folder: two ``fit`` runs onto one model file
    would share its pretraining state and replace each other's model."""
    with _lock(Path(f"{path}.lock").absolute(), path, "choose another --out"):
        yield


@contextlib.contextmanager
def _lock(lock: Path, written, fix: str):
    if lock in _held:  # the outer block lets go of it
        yield
        return
    fd = _take(lock)
    if fd is None:
        holder = _holder(lock)
        raise UsageError(f"{str(written)!r} is being written by "
                         + (f"process {holder}" if holder else "another process")
                         + f": wait for it to end, or {fix}")
    _held.add(lock)
    try:
        yield
    finally:
        _held.discard(lock)
        lock.unlink(missing_ok=True)
        os.close(fd)
