"""Long training resumes mid-way: a pretraining stopped at any point — killed between two
saves, or stopped by a signal after its step — and started again ends with weights
bit-identical to a run that never stopped (CPU)."""

import dataclasses
import hashlib
import os
import signal

import pytest
import torch

from fewlabels.config import load_preset
from fewlabels.pretrain import pretrain
from fewlabels.runtime import resolve


def recipe():
    p = load_preset("default").pretrain
    return dataclasses.replace(p, epochs=1, batch=100, encoder_options={"width": 4},
                               refine_rounds=2, refine_epochs=1, self_label_epochs=1)


def weights_hash(encoder) -> str:
    h = hashlib.sha256()
    for k, v in sorted(encoder.state_dict().items()):
        h.update(k.encode() + v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(mnist):
    return dataclasses.replace(mnist.subset(train=600, test=10), name="mnist")


@pytest.fixture(scope="module")
def uninterrupted(small):
    rt = resolve("cpu", "fp32")
    encoder, _, history = pretrain(small, recipe(), rt, progress=False)
    return weights_hash(encoder), history


class Crash(Exception):
    pass


@pytest.mark.parametrize("stop_at", [3, 9, 14, 23])  # inside each of the four stages
@pytest.mark.parametrize("how", ["crash", "signal"])
def test_a_stopped_pretraining_resumes_bit_identical(small, uninterrupted, tmp_path,
                                                     monkeypatch, stop_at, how):
    from fewlabels import train

    rt = resolve("cpu", "fp32")
    state = tmp_path / "enc.state"
    steps = {"n": 0}  # 24 in all: 6 a stage (first method, two SCAN rounds, self-label)
    original_loop = train.loop

    def loop_that_stops(params, loss_fn, batches, **kw):
        def stopping_loss(idx):
            steps["n"] += 1
            if steps["n"] == stop_at:
                if how == "crash":  # like SIGKILL: nothing saved now, the last save stands
                    raise Crash()
                os.kill(os.getpid(), signal.SIGINT)  # saved after this step, then stops
            return loss_fn(idx)

        return original_loop(params, stopping_loss, batches, **kw)

    import fewlabels.pretrain as pre

    monkeypatch.setattr(pre, "loop", loop_that_stops)
    with pytest.raises(Crash if how == "crash" else KeyboardInterrupt):
        pretrain(small, recipe(), rt, progress=False, state_path=state, save_every=2)
    assert state.exists()
    monkeypatch.setattr(pre, "loop", original_loop)
    encoder, _, history = pretrain(small, recipe(), rt, progress=False, state_path=state,
                                   save_every=2)
    assert not state.exists(), "the state is removed when pretraining ends"
    expected_hash, expected_history = uninterrupted
    assert weights_hash(encoder) == expected_hash
    assert history.records == expected_history.records


def test_a_state_of_another_recipe_is_refused(small, tmp_path):
    from fewlabels import checkpoint
    from fewlabels.errors import UsageError
    from fewlabels.pretrain import STATE_KIND

    checkpoint.save_tree(tmp_path / "s.state", {"recipe": {"epochs": 99}}, STATE_KIND)
    with pytest.raises(UsageError, match="another recipe or dataset"):
        pretrain(small, recipe(), resolve("cpu", "fp32"), progress=False,
                 state_path=tmp_path / "s.state")


@pytest.mark.usefixtures("mnist")
def test_fewlabels_pretrain_killed_with_sigkill_resumes_to_the_same_encoder(tmp_path):
    import subprocess
    import sys
    import time

    from fewlabels.pretrain import load_encoder

    def command(out):
        return [sys.executable, "-m", "fewlabels", "pretrain", "--preset", "default",
                "--epochs", "3", "--batch", "100", "--width", "4", "--set", "pool=1000",
                "--set", "refine_rounds=1", "--set", "refine_epochs=2",
                "--set", "self_label_epochs=1", "--device", "cpu", "--precision", "fp32",
                "--save-every", "3", "--out", str(out)]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "whole.encoder"), env=env, check=True,
                   capture_output=True, timeout=300)
    cut = tmp_path / "cut.encoder"
    state = tmp_path / "cut.encoder.state"
    proc = subprocess.Popen(command(cut), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a few steps past the first save
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert state.exists() and not cut.exists(), "killed before the end, its state on disk"
    r = subprocess.run(command(cut), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "resuming the interrupted pretraining" in r.stderr
    assert not state.exists()
    whole, _ = load_encoder(tmp_path / "whole.encoder")
    resumed, _ = load_encoder(cut)
    assert weights_hash(resumed) == weights_hash(whole)
