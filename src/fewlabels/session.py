"""The command line's work in a scheduling session of its own: the CPUs shared by job.

Linux's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled`` = 1) shares the
CPUs between sessions first and between the threads of a session second. A command started
from a terminal shares that terminal's session with whatever else is started there, so a
competitor that starts later from the same terminal takes a share by its thread count:
beside a 2-thread process fewlabels' one thread (``sharing.py``) got a third of two cores,
2.4–2.7 times slower; beside a competitor from another terminal, half (about 1.9 times).
So ``fewlabels`` runs its work in a child process that starts a session of its own (the
kernel gives it its own autogroup), and the process the terminal started stays in the
terminal's session to pass on what the terminal sends it: Ctrl-C, Ctrl-\\ and Ctrl-Z
(its work is stopped and continued with it), a hang-up and ``kill``. A child outlives no
parent: it is killed when its parent dies, ``kill -9`` included. Its exit status is the
command's. ``FEWLABELS_OWN_SESSION=0`` keeps the work in the caller's session; so do
torchrun (its launcher manages its processes), a process that leads its session already,
and systems without autogroup scheduling. This module must not import torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .errors import env_switch

AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")
PR_SET_PDEATHSIG = 1  # prctl(2)


def own_session_enabled() -> bool:
    """``$FEWLABELS_OWN_SESSION``: 1 (or unset) runs the command line's work in a session
    of its own where that changes how the CPUs are shared, 0 never; other values are a
    UsageError, not a guess."""
    return env_switch("FEWLABELS_OWN_SESSION", "keep the work in the terminal's session",
                      "give it a session of its own")


def own_session_wanted() -> bool:
    """Whether a session of its own changes this process's share of the CPUs: autogroup
    scheduling is on, the process does not lead its session already, torchrun did not
    start it, and ``$FEWLABELS_OWN_SESSION`` allows it."""
    if not own_session_enabled() or not sys.platform.startswith("linux"):
        return False
    if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ:
        return False
    try:
        if AUTOGROUP.read_text().strip() != "1":
            return False
    except OSError:
        return False
    return os.getsid(0) != os.getpid()


def _dying_with(parent: int):
    """What the child runs before the command: SIGKILL when ``parent`` dies (prctl), and
    exit at once if it died already (libc is loaded here, before the fork)."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)
    return die_with_parent


def run_in_own_session(command: list[str]) -> int:
    """Run ``command`` in a new session, passing on the signals this process gets, and
    return its exit status (128 + N where a signal N ended it and this process survives
    raising it on itself)."""
    parent = os.getpid()
    started: list[subprocess.Popen] = []  # the child, once started
    early: list[tuple] = []  # what came before it started, sent when it has

    def send(kill, signum):
        if not started:
            early.append((kill, signum))
            return
        try:
            kill(started[0].pid, signum)
        except ProcessLookupError:  # it ended meanwhile: its status is on its way
            pass

    def to_group(signum, frame):  # what a terminal sends its foreground job: every process
        send(os.killpg, signum)

    def to_child(signum, frame):  # what `kill` sends one process
        send(os.kill, signum)

    def stop(signum, frame):  # Ctrl-Z: a session of its own ignores SIGTSTP, so SIGSTOP it,
        send(os.killpg, signal.SIGSTOP)  # then this process, for the shell to see
        os.kill(parent, signal.SIGSTOP)

    def cont(signum, frame):
        send(os.killpg, signal.SIGCONT)

    handlers = {signal.SIGINT: to_group, signal.SIGQUIT: to_group, signal.SIGTERM: to_child,
                signal.SIGHUP: to_child, signal.SIGTSTP: stop, signal.SIGCONT: cont}
    previous = {s: signal.signal(s, h) for s, h in handlers.items()  # a signal the caller
                if signal.getsignal(s) is not signal.SIG_IGN}  # ignores stays ignored, in both
    try:
        started.append(subprocess.Popen(
            command, start_new_session=True, preexec_fn=_dying_with(parent),
            restore_signals=True, env={**os.environ, "FEWLABELS_OWN_SESSION": "0"}))
        # (its own processes, compare's workers, stay in its session)
        for kill, signum in early:
            send(kill, signum)
        status = started[0].wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if status >= 0:
        return status
    if -status not in (signal.SIGKILL, signal.SIGSTOP):  # those two take no handler
        signal.signal(-status, signal.SIG_DFL)  # die as the child did, for the shell to see
    os.kill(parent, -status)
    return 128 - status
