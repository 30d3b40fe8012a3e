"""Verified checkpoints: every damaged byte is caught (or changes nothing), and a failed
write leaves the previous file and no temp file."""

import errno
import json

import pytest
import torch

from fewlabels import checkpoint
from fewlabels.errors import UsageError


def small(tmp_path):
    torch.manual_seed(0)
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(4, dtype=torch.int64),
               "h": torch.randn(2).to(torch.bfloat16)}
    meta = {"classes": ["a", "b"], "note": "x" * 10}
    path = checkpoint.save(tmp_path / "m.model", tensors, "model", meta)
    return path, tensors, meta


def test_round_trip(tmp_path):
    path, tensors, meta = small(tmp_path)
    got, got_meta = checkpoint.load(path, "model")
    assert got_meta == meta and got.keys() == tensors.keys()
    assert all(torch.equal(got[k], tensors[k]) for k in tensors)


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    path, tensors, meta = small(tmp_path)
    good = path.read_bytes()
    outcomes = {"caught": 0, "harmless": 0}
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        try:
            got, got_meta = checkpoint.load(path, "model")
        except UsageError:
            outcomes["caught"] += 1
            continue
        # only a flip in the header's padding can load, and then nothing changed
        assert got_meta == meta and all(torch.equal(got[k], tensors[k]) for k in tensors), i
        outcomes["harmless"] += 1
    assert outcomes["caught"] > 0.95 * len(good)


@pytest.mark.parametrize("cut", [0, 7, 100, -1])
def test_truncated_checkpoint_is_one_error(tmp_path, cut):
    path, _, _ = small(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(UsageError, match="corrupt or not a safetensors file"):
        checkpoint.load(path, "model")


def test_a_pickle_renamed_to_a_checkpoint_is_refused_without_running(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            target = str(tmp_path / "pwned")
            return (exec, (f"open({target!r}, 'w').write('ran')",))

    path = tmp_path / "evil.encoder"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UsageError):
        checkpoint.load(path, "encoder")
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_without_its_checksum_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "old.model"
    save_file({"w": torch.zeros(2)}, str(path), metadata={
        "format": checkpoint.FORMAT, "kind": "model", "meta": json.dumps({})})
    with pytest.raises(UsageError, match="fails its checksum"):
        checkpoint.load(path, "model")


def test_metadata_nested_too_deep_with_a_good_checksum_is_one_error(tmp_path):
    """A tampered file can carry a checksum of its own (the digest is no secret): metadata
    deeper than the JSON parser's recursion is refused as invalid, not a traceback."""
    from safetensors.torch import save_file

    tensors, meta = {"w": torch.zeros(2)}, "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.model"
    save_file(tensors, str(path), metadata={
        "format": checkpoint.FORMAT, "kind": "model", "meta": meta,
        "sha256": checkpoint.digest(tensors, "model", meta)})
    with pytest.raises(UsageError, match="has no valid metadata"):
        checkpoint.load(path, "model")


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path, tensors, meta = small(tmp_path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    with pytest.raises(OSError):
        checkpoint.save(path, {"w": torch.ones(2)}, "model", {})
    with pytest.raises(OSError):
        checkpoint.atomic_write_text(tmp_path / "results.json", "{}")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.model"]


def test_metadata_that_does_not_fit_the_model_is_one_error(tmp_path):
    from fewlabels.encoders import ConvEncoder
    from fewlabels.predictor import Model

    enc = ConvEncoder((1, 8, 8), width=4)
    meta = {"encoder": "conv", "encoder_options": {"width": 8}, "image_shape": [1, 8, 8],
            "classes": ["a", "b"]}
    tensors = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
               "head.weight": torch.zeros(2, 16), "head.bias": torch.zeros(2)}
    checkpoint.save(tmp_path / "m.model", tensors, "model", meta)
    with pytest.raises(UsageError, match="tensors do not fit the network"):
        Model.load(tmp_path / "m.model")
    checkpoint.save(tmp_path / "n.model", tensors, "model",
                    {"classes": ["a", "b"], "image_shape": [1, 8, 8]})
    with pytest.raises(UsageError, match="metadata lacks 'encoder'"):
        Model.load(tmp_path / "n.model")
    checkpoint.save(tmp_path / "o.model", tensors, "model", {"classes": ["a", "b"]})
    with pytest.raises(UsageError, match="says its images have shape None"):
        Model.load(tmp_path / "o.model")


def test_a_full_disk_while_a_run_is_logged_keeps_the_finished_runs(tmp_path, monkeypatch):
    """ENOSPC on the append of a finished run: the error goes up (the CLI prints one line,
    exit 2) and the runs already logged stay readable."""
    from fewlabels.results import Run, RunLog

    log = RunLog(tmp_path)
    first = Run("mnist", "probe", "simclr", 100, 0, 0.9, [0.9], [[1]], 1.0, {})
    log.add(first)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("fewlabels.results.os.fsync", full)
    with pytest.raises(OSError):
        log.add(Run("mnist", "probe", "simclr", 100, 1, 0.8, [0.8], [[1]], 1.0, {}))
    monkeypatch.undo()
    kept = RunLog(tmp_path).done
    assert kept[first.key()] == first


def test_a_header_in_any_key_order_is_written_in_one_order():
    import json

    from safetensors.torch import load, save

    data = save({"w": torch.arange(6.0), "b": torch.ones(2)},
                metadata={"kind": "model", "meta": "{}", "format": "x", "sha256": "y"})
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    shuffled = {k: header[k] for k in reversed(header)}
    shuffled["__metadata__"] = {k: header["__metadata__"][k]
                                for k in reversed(header["__metadata__"])}
    text = json.dumps(shuffled, separators=(",", ":")).encode()
    other = data[:8] + text + b" " * (n - len(text)) + data[8 + n:]
    assert other != data  # the same file, its header in another order
    assert checkpoint.in_key_order(other) == checkpoint.in_key_order(data)
    tensors = load(checkpoint.in_key_order(other))
    assert torch.equal(tensors["w"], torch.arange(6.0)) and torch.equal(tensors["b"], torch.ones(2))
