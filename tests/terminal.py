"""A child process started as a terminal starts its job: with the signals a terminal sends
(Ctrl-C, Ctrl-\\, a hang-up) at their defaults, whatever ran the tests (`nohup`, or a
script's `&`, ignores SIGHUP and SIGINT, and an ignored signal stays ignored across exec)."""

import signal


def as_from_a_terminal() -> None:
    """``preexec_fn`` for ``subprocess.Popen``."""
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_DFL)
