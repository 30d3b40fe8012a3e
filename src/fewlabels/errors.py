"""Errors a user can fix. The CLI prints their message on one line and exits with code 2."""

import inspect
import json
import math
import os


class UsageError(ValueError):
    """A bad value from the user: the message names the value, the allowed range and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that it stops as on SIGINT (exit 143)."""


class DataError(UsageError):
    """A data file that is missing, truncated or altered, and could not be fetched again."""


def is_finite_number(value) -> bool:
    """A number (not a bool), neither infinite nor NaN."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def env_switch(name: str, off: str, on: str) -> bool:
    """``$name`` as an on/off switch: 1 (or unset, or empty) on, 0 off; any other value is a
    UsageError naming what 0 does (``off``) and what 1 does (``on``), not a guess."""
    value = os.environ.get(name) or "1"
    if value not in ("0", "1"):
        raise UsageError(f"{name}={value!r} is not 0 or 1: set 0 to {off}, 1 (or unset it) "
                         f"to {on}")
    return value == "1"


def parse_json(text: str | bytes):
    """``json.loads``, where nesting too deep for the parser is a ValueError like any other
    malformed JSON (the parser raises RecursionError): for files a user may have changed."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def one_line(name: str) -> str:
    """``name`` as shown in a line of text: quoted (Python's escapes) when it holds a line
    break or another control character, so that one name stays one line."""
    return repr(name) if any(ord(c) < 32 or ord(c) == 127 for c in name) else name


def check_unique(name: str, values) -> None:
    """Raise UsageError naming the first value given twice."""
    seen = set()
    for v in values:
        if v in seen:
            raise UsageError(f"{name} gives {v!r} twice: give each once")
        seen.add(v)


def check_seed(name: str, value) -> None:
    """A seed: an integer from 0 to 2**63 - 1 (what a torch generator takes)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise UsageError(f"{name}={value!r} is out of range: use an integer from 0 to "
                         f"{2**63 - 1}")


def check_positive(name: str, value: float, *, integer: bool = False, hint: str = "") -> None:
    """Raise UsageError unless ``value`` is a positive number (an integer when ``integer``)."""
    kind = "a positive integer" if integer else "a positive number"
    ok = is_finite_number(value) and value > 0
    if integer and ok:
        ok = float(value).is_integer()
    if not ok:
        raise UsageError(f"{name}={value!r} is not allowed: it must be {kind} (> 0){hint}")


MOST_EPOCHS = 1_000_000  # far past any recipe: a typo (1e12) would otherwise run for ever


def check_epochs(name: str, value: float, *, integer: bool = False,
                 zero: bool = False) -> None:
    """Raise UsageError unless ``value`` is a count of passes over the data: above 0 (or 0
    with ``zero``), at most ``MOST_EPOCHS``, and whole when ``integer``."""
    (check_non_negative if zero else check_positive)(name, value, integer=integer)
    if value > MOST_EPOCHS:
        raise UsageError(f"{name}={value!r} is out of range: at most {MOST_EPOCHS:,} passes "
                         "over the data; give fewer")


def check_non_negative(name: str, value: float, *, integer: bool = False,
                       hint: str = "") -> None:
    """Raise UsageError unless ``value`` is a number >= 0 (an integer when ``integer``)."""
    kind = "an integer >= 0" if integer else "a number >= 0"
    ok = is_finite_number(value) and value >= 0
    if integer and ok:
        ok = float(value).is_integer()
    if not ok:
        raise UsageError(f"{name}={value!r} is not allowed: it must be {kind}{hint}")


def check_fraction(name: str, value: float, *, zero: bool = False, one: bool = False,
                   hint: str = "") -> None:
    """Raise UsageError unless ``value`` lies in (0, 1), with 0 / 1 allowed when asked."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (0 <= value if zero else 0 < value) and (value <= 1 if one else value < 1))
    if not ok:
        span = f"{'[' if zero else '('}0, 1{']' if one else ')'}"
        raise UsageError(f"{name}={value!r} is out of range: use a fraction in {span}{hint}")


def construct(cls, where: str, what: str, *args, **options):
    """``cls(*args, **options)``, with each option checked against the names ``cls`` takes
    after ``args`` and any UsageError its constructor raises (it checks its values) given
    ``where`` in front, so the message names the setting (``pretrain.options.temperature``).
    ``what`` names the thing built in the unknown-option message."""
    allowed = list(inspect.signature(cls.__init__).parameters)[1 + len(args):]
    for key in options:
        if key not in allowed:
            raise UsageError(f"unknown setting {where + key!r}: {what} takes "
                             + (", ".join(allowed) or "no options"))
    try:
        return cls(*args, **options)
    except UsageError as e:
        raise UsageError(f"{where}{e}") from None


def check_choice(name: str, value: str, choices) -> None:
    """Raise UsageError unless ``value`` is one of ``choices``."""
    if value not in choices:
        allowed = ", ".join(sorted(choices))
        raise UsageError(f"unknown {name} {value!r}: choose one of {allowed}")
