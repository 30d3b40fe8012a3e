"""Fuzzing the parsers with arbitrary bytes and strings: only our own clean errors (one
line a user can act on), never a crash, a traceback or a hang."""

import argparse
import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewlabels import checkpoint
from fewlabels.cli import build_parser, compare_config
from fewlabels.config import load_preset, parse_set
from fewlabels.data import parse_idx, parse_label_budget
from fewlabels.errors import DataError, UsageError

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.binary(max_size=64))
def test_idx_parser(data):
    try:
        parse_idx(data)
    except DataError as e:
        assert "\n" not in str(e)


@FAST
@given(st.binary(max_size=64))
def test_idx_parser_with_a_valid_header_prefix(tail):
    try:
        parse_idx(b"\x00\x00\x08\x02" + tail)
    except DataError:
        pass


@FAST
@given(data=st.binary(max_size=512))
def test_checkpoint_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ckpt") / "x.model"
    path.write_bytes(data)
    with pytest.raises(UsageError):
        checkpoint.load(path, "model")


@FAST
@given(st.text(max_size=20) | st.integers() | st.floats(allow_nan=True))
def test_label_budget_parser(value):
    try:
        count = parse_label_budget(value, 60000)
    except UsageError:
        return
    assert isinstance(count, int) and 1 <= count <= 60000


@FAST
@given(st.lists(st.text(max_size=30), max_size=3))
def test_set_parser_and_every_setting(items):
    try:
        load_preset("default", parse_set(items))
    except UsageError:
        pass


OPTIONS = ["--preset", "--dataset", "--labels", "--seeds", "--pretrain-seeds", "--arms",
           "--label-sampling", "--device", "--precision", "--epochs", "--pretrain-epochs",
           "--latent-size", "--set", "--tune"]


@FAST
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), st.text(max_size=12)), max_size=3))
def test_compare_options(pairs):
    argv = ["compare"] + [x for option, value in pairs for x in (option, value)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse's own one-line usage error
        assert e.code == 2
        return
    assert isinstance(args, argparse.Namespace)
    try:
        compare_config(args)
    except UsageError as e:
        assert str(e)
