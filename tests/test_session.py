"""The command line's work in a session of its own: signals passed on, status kept, no
orphan left behind."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fewlabels import cli, session
from fewlabels.errors import UsageError
from fewlabels.session import own_session_enabled, own_session_wanted
from terminal import as_from_a_terminal

# a child that reports its session and the signals it gets, then waits to be told to end
CHILD = """
import os, signal, sys, time
out = sys.argv[1]
def got(signum, frame):
    with open(out, "a") as f:
        f.write(signal.Signals(signum).name + "\\n")
    if signum == signal.SIGTERM:
        sys.exit(143)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, got)
with open(out, "a") as f:
    f.write(f"sid {os.getsid(0)} pid {os.getpid()}\\n")
t = time.time()
while time.time() - t < 60:
    time.sleep(0.02)
    if os.path.exists(out + ".end"):
        sys.exit(int(open(out + ".end").read()))
"""


def launch(tmp_path):
    """A process that runs ``CHILD`` through ``run_in_own_session``; (it, the log)."""
    log = tmp_path / "log"
    code = ("import sys\nfrom fewlabels.session import run_in_own_session\n"
            f"sys.exit(run_in_own_session([sys.executable, '-c', {CHILD!r}, {str(log)!r}]))")
    parent = subprocess.Popen([sys.executable, "-c", code], preexec_fn=as_from_a_terminal)
    deadline = time.time() + 60
    while not (log.exists() and "sid" in log.read_text()) and time.time() < deadline:
        time.sleep(0.02)
    return parent, log


def child_pid(log):
    return int(log.read_text().split()[3])


def wait_for(predicate, seconds=20):
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.02)
    return predicate()


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def alive(pid):
    try:
        return state(pid) != "Z"
    except FileNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sessions")


def test_the_work_runs_in_a_session_of_its_own_and_its_status_is_the_commands(tmp_path):
    parent, log = launch(tmp_path)
    first = log.read_text().split()
    assert int(first[1]) == int(first[3]) != os.getsid(0), "the child leads a new session"
    (tmp_path / "log.end").write_text("3")
    assert parent.wait(timeout=60) == 3


@pytest.mark.parametrize("signame, to_child, code", [("SIGTERM", "SIGTERM", 143),
                                                     ("SIGINT", "SIGINT", 0),
                                                     ("SIGHUP", "SIGHUP", 0)])
def test_a_signal_to_the_command_reaches_its_work(tmp_path, signame, to_child, code):
    parent, log = launch(tmp_path)
    parent.send_signal(getattr(signal, signame))
    assert wait_for(lambda: to_child in log.read_text())
    if code == 0:  # the child chose to go on: the command waits for it
        time.sleep(0.2)
        assert parent.poll() is None
        (tmp_path / "log.end").write_text("0")
    assert parent.wait(timeout=60) == code


def test_ctrl_z_stops_the_work_and_fg_continues_it(tmp_path):
    parent, log = launch(tmp_path)
    child = child_pid(log)
    parent.send_signal(signal.SIGTSTP)
    assert wait_for(lambda: state(child) == "T" and state(parent.pid) == "T")
    parent.send_signal(signal.SIGCONT)
    assert wait_for(lambda: state(child) != "T" and state(parent.pid) != "T")
    (tmp_path / "log.end").write_text("0")
    assert parent.wait(timeout=60) == 0


def test_the_work_dies_with_the_command_even_under_kill_9(tmp_path):
    parent, log = launch(tmp_path)
    child = child_pid(log)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=60)
    assert wait_for(lambda: not alive(child)), "no orphan left running"


def test_a_child_killed_by_a_signal_ends_the_command_the_same_way(tmp_path):
    parent, log = launch(tmp_path)
    os.kill(child_pid(log), signal.SIGKILL)
    assert parent.wait(timeout=60) == -signal.SIGKILL


def test_the_choice_is_refused_when_misspelt_and_off_where_it_cannot_help(monkeypatch):
    monkeypatch.setenv("FEWLABELS_OWN_SESSION", "yes")
    with pytest.raises(UsageError, match="FEWLABELS_OWN_SESSION='yes' is not 0 or 1: set 0"):
        own_session_enabled()
    monkeypatch.setenv("FEWLABELS_OWN_SESSION", "0")
    assert not own_session_wanted()
    monkeypatch.setenv("FEWLABELS_OWN_SESSION", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")  # torchrun manages its processes
    assert not own_session_wanted()
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setattr(session, "AUTOGROUP", session.Path("/nonexistent/autogroup"))
    assert not own_session_wanted()


def test_the_command_line_hands_its_work_to_a_session_of_its_own(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "argv", ["fewlabels", "data", "info", "mnist"])
    monkeypatch.setattr(session, "own_session_wanted", lambda: True)
    monkeypatch.setattr(session, "run_in_own_session", lambda cmd: calls.append(cmd) or 7)
    assert cli.main() == 7
    assert calls == [[sys.executable, "-m", "fewlabels", "data", "info", "mnist"]]
    assert cli.main(["data", "info", "mnist"]) in (0, 2) and len(calls) == 1, \
        "called with arguments (the Python API, tests): in this process"


def test_a_misspelt_choice_is_one_line_and_exit_2_at_the_command_line():
    r = subprocess.run([sys.executable, "-m", "fewlabels", "data", "info", "mnist"],
                       env={**os.environ, "FEWLABELS_OWN_SESSION": "on"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "fewlabels: error: FEWLABELS_OWN_SESSION='on' is not 0 or 1: set 0 to keep the work "
        "in the terminal's session, 1 (or unset it) to give it a session of its own"]
    r = subprocess.run([sys.executable, "-m", "fewlabels", "--debug", "data", "info", "mnist"],
                       env={**os.environ, "FEWLABELS_OWN_SESSION": "on"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" in r.stderr  # --debug: the traceback, as elsewhere


def test_a_signal_its_caller_ignores_stays_ignored_in_the_work():
    """`nohup fewlabels ...` (or `cmd &` in a script: SIGINT) ignores the signal: so does the
    work, as it did in the caller's session."""
    code = ("import signal, sys\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "from fewlabels.session import run_in_own_session\n"
            "probe = 'import signal; print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN)'\n"
            "sys.exit(run_in_own_session([sys.executable, '-c', probe]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "True"


def test_the_work_runs_in_this_process_when_no_child_can_be_started(monkeypatch, capsys):
    def fork_fails(cmd):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(sys, "argv", ["fewlabels", "data", "info", "no-such-dataset"])
    monkeypatch.setattr(session, "own_session_wanted", lambda: True)
    monkeypatch.setattr(session, "run_in_own_session", fork_fails)
    assert cli.main() == 2  # the command itself ran: its own usage error, not the fork's
    assert "no-such-dataset" in capsys.readouterr().err
