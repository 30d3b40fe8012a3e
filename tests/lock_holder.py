"""Another process holding a run folder's lock, for the tests of what a second writer is told."""

import contextlib
import subprocess
import sys

HOLD = """
import sys, time
from pathlib import Path
from fewlabels.outputs import output_file_lock, run_folder_lock
from fewlabels.errors import UsageError
lock = output_file_lock if sys.argv[3:] == ["file"] else run_folder_lock
try:
    with lock(Path(sys.argv[1])):
        print("held", flush=True)
        end = time.time() + 60
        while not Path(sys.argv[2]).exists() and time.time() < end:  # until told to let go
            time.sleep(0.05)
except UsageError:
    print("refused", flush=True)
"""


def start_holder(folder, release, kind: str = "folder") -> subprocess.Popen:
    """A process that takes ``folder``'s lock (an output file's with ``kind`` "file") or is
    refused, says which on its first line, and holds it until the file ``release`` exists
    (60 s at most)."""
    return subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(release), kind],
                            stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def lock_held(folder):
    """``folder``'s lock held by another process while the block runs; yields its pid."""
    holder = start_holder(folder, folder.parent / f".{folder.name}.release")
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
