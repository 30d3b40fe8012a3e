"""A trained classifier in one file, and what a user does with it: predict, embed, export.

The file is a fewlabels checkpoint (safetensors, kind ``model``): the network's weights,
16 training images kept to check an export against, and JSON metadata — class names,
image size and mode, pre-processing, the arm and recipe, validation (and test, when the
data had a test split) accuracy, the data's hash and the fewlabels version.
"""

from __future__ import annotations

import copy
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint, images
from .data import as_float
from .encoders import ClassifierNet, build_encoder
from .errors import UsageError, check_positive
from .shifts import Averaged, check_shifts

KIND = "model"
PREPROCESSING = ("decode with Pillow; convert to grey (L) or RGB as the model's `channels` "
                 "say (16-bit scaled to 8 bits, alpha dropped); resize the longer side to "
                 "`image_size` keeping the aspect, pad to a square with the mean border pixel; "
                 "float32 in [0, 1] (pixel / 255), shape (N, channels, image_size, image_size)")


def model_meta(classes, image_shape, arm: str, encoder: str, encoder_options: dict,
               shifts: int = 0) -> dict:
    """What every model file says of the network it holds and the inputs it takes (``fit``
    and the notebook's ``Classifier.save`` both write it; each adds its own record):
    ``shifts``, the pixels its prediction averages copies moved by (``fewlabels.shifts``)."""
    return {"classes": list(classes), "image_shape": list(image_shape),
            "channels": image_shape[0], "image_size": image_shape[1],
            "preprocessing": PREPROCESSING, "arm": arm, "encoder": encoder,
            "encoder_options": dict(encoder_options), "shifts": shifts}


def _expanded(inputs) -> list[str]:
    """The files that ``inputs`` (files, folders, globs, -) name; a folder's files that are
    not images by their extension are left out with one line on stderr naming them."""
    skipped: dict[str, str] = {}
    files = list(images.expand((str(p) for p in inputs), skipped))
    if skipped:
        names = ", ".join(list(skipped)[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"fewlabels: skipped {len(skipped)} file(s) in the folders given whose "
              f"extension is not an image type ({' '.join(images.EXTENSIONS)}): {names}",
              file=sys.stderr)
    return files


@dataclass
class Predictions:
    """What ``Model.predict`` returns, one row per readable input, in input order."""

    names: list[str]  # the model's class names
    probabilities: np.ndarray  # (N, classes) float32
    files: list[str] | None = None  # the file behind each row, when inputs were paths
    errors: dict[str, str] = field(default_factory=dict)  # unreadable file → why

    @property
    def classes(self) -> list[str]:
        return [self.names[i] for i in self.probabilities.argmax(1)]

    def top(self, k: int = 1) -> list[list[tuple[str, float]]]:
        order = np.argsort(-self.probabilities, 1, kind="stable")[:, :k]
        return [[(self.names[i], float(p[i])) for i in row]
                for row, p in zip(order, self.probabilities, strict=True)]

    def rows(self, k: int = 1) -> list[dict]:
        """One dict a row: file (if any), class, probability and the top ``k``."""
        out = []
        for i, best in enumerate(self.top(max(1, k))):
            row = {"file": self.files[i]} if self.files is not None else {}
            row.update({"class": best[0][0], "probability": round(best[0][1], 6)})
            if k > 1:
                row["top"] = [{"class": c, "probability": round(p, 6)} for c, p in best]
            out.append(row)
        return out


def check_model(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """A model file's weights are finite and its metadata sane (an image shape of three
    positive sizes, distinct class names, one per output); else one line naming it."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise UsageError(f"{str(path)!r} holds non-finite weights ({bad[0]}): it cannot "
                         "predict; train it again")
    shape, classes = meta.get("image_shape"), meta.get("classes")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(s, int) and 0 < s <= 4096 for s in shape)):
        raise UsageError(f"{str(path)!r} says its images have shape {shape!r}: expected "
                         "[channels, size, size] of positive sizes; the file is damaged")
    if (not isinstance(classes, list) or not classes
            or len(set(map(str, classes))) != len(classes)):
        raise UsageError(f"{str(path)!r} lists classes {classes!r}: expected distinct names; "
                         "the file is damaged")
    try:
        check_shifts("shifts", meta.get("shifts", 0), shape)
    except UsageError as e:
        raise UsageError(f"{str(path)!r}: {e}; the file is damaged") from None
    head = tensors.get("head.weight")
    if head is not None and head.shape[0] != len(classes):
        raise UsageError(f"{str(path)!r} names {len(classes)} classes but its network has "
                         f"{head.shape[0]} outputs: the file is damaged")


class Model:
    """A classifier trained by ``fewlabels.fit``: an encoder and a linear layer, with the
    class names and the pre-processing its inputs need."""

    def __init__(self, net: ClassifierNet, meta: dict, samples: torch.Tensor | None = None,
                 device: str = "cpu"):
        self.net = net.float().eval()
        self.meta = meta
        self.samples = samples  # a few uint8 training images, to check exports on
        self.to(device)

    def to(self, device: str) -> Model:
        """Compute on ``device`` (``cpu``, ``cuda`` or ``auto``), in float32."""
        from .runtime import resolve

        self.device = resolve(device, "fp32").device
        self._module().to(self.device)
        return self

    def _module(self) -> torch.nn.Module:
        return self.net

    def _encoder(self) -> torch.nn.Module:
        return self.net.encoder

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def shifts(self) -> int:
        """The pixels its prediction averages copies moved by (0: none; ``shifts``)."""
        return int(self.meta.get("shifts", 0))  # files written before it: the plain one

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])  # type: ignore[return-value]

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        tensors = dict(self.net.state_dict())
        if self.samples is not None:
            tensors["samples"] = self.samples
        return checkpoint.save(path, tensors, KIND, self.meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Model:
        tensors, meta = checkpoint.load(path, KIND)
        check_model(path, tensors, meta)
        with checkpoint.rebuilding(path):
            encoder = build_encoder(meta["encoder"], meta["image_shape"],
                                    **meta["encoder_options"])
            net = ClassifierNet(encoder, len(meta["classes"]))
            samples = tensors.pop("samples", None)
            net.load_state_dict(tensors)
        return cls(net, meta, samples, device)

    # ------------------------------------------------------------------ inputs

    def read(self, paths: Iterable[str], progress: bool = False,
             batch: int = 1024) -> Iterable[tuple[list[str], torch.Tensor, dict[str, str]]]:
        """Decode ``paths`` in batches: (files read, uint8 images, {unreadable file: why})."""
        c, size, _ = self.image_shape
        paths = list(paths)
        bar = tqdm(total=len(paths), desc="reading images", unit="img",
                   disable=not progress or len(paths) < 2 * batch)
        for start in range(0, len(paths), batch):
            done, arrays, errors = [], [], {}
            for p in paths[start:start + batch]:
                try:
                    arrays.append(images.decode(p, size, c))
                    done.append(p)
                except images.UnreadableImage as e:
                    errors[p] = str(e)
            bar.update(len(paths[start:start + batch]))
            x = torch.from_numpy(np.stack(arrays)) if arrays else \
                torch.zeros((0, *self.image_shape), dtype=torch.uint8)
            yield done, x, errors
        bar.close()

    def decode(self, paths, progress: bool = False, batch: int = 1024
               ) -> tuple[torch.Tensor, list[str], dict[str, str]]:
        """(uint8 images, the files read, {unreadable file: why}) of files, folders or
        globs, decoded the model's way."""
        files, parts, errors = [], [], {}
        for done, x, bad in self.read(_expanded(paths), progress, batch):
            files += done
            parts.append(x)
            errors.update(bad)
        x = torch.cat(parts) if parts else torch.zeros((0, *self.image_shape), dtype=torch.uint8)
        return x, files, errors

    def _tensor(self, x) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if tuple(x.shape[1:]) != self.image_shape:
            raise UsageError(f"images of shape {list(x.shape[1:])} given, the model takes "
                             f"{list(self.image_shape)}: pass file paths (they are resized) or "
                             "arrays of that shape")
        return as_float(x) if x.dtype == torch.uint8 else x.float()

    def _run(self, fn, inputs, progress: bool, batch: int):
        """``fn`` on float images (on the model's device; results back on the CPU), from
        arrays or from paths (decoded in batches)."""
        check_positive("batch", batch, integer=True)
        on_device = fn

        def fn(x):
            return on_device(x.to(self.device)).cpu()

        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        if isinstance(inputs, (torch.Tensor, np.ndarray)):
            x = self._tensor(inputs)
            return torch.cat([fn(part) for part in x.split(batch)]) if len(x) else fn(x), \
                None, {}
        files, outs, errors = [], [], {}
        for done, x, bad in self.read(_expanded(inputs), progress, batch):
            files += done
            errors.update(bad)
            if len(x):
                outs.append(fn(as_float(x)))
        out = torch.cat(outs) if outs else fn(torch.zeros((0, *self.image_shape)))
        return out, files, errors

    # ------------------------------------------------------------------ uses

    def predict(self, inputs, *, progress: bool = False, batch: int = 1024) -> Predictions:
        """Class probabilities of images: an array or tensor (N, C, H, W) / (N, H, W) of the
        model's size (uint8, or float in [0, 1]), or paths (files, folders, globs)."""
        averaged = Averaged(self.net, self.shifts)

        def probabilities(x):
            with torch.no_grad():
                return averaged(x)

        p, files, errors = self._run(probabilities, inputs, progress, batch)
        return Predictions(self.classes, p.numpy(), files, errors)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of ``images`` whose most probable class is their label."""
        predicted = torch.from_numpy(self.predict(images).probabilities).argmax(1)
        return (predicted == labels).float().mean().item()

    def embed(self, inputs, *, progress: bool = False, batch: int = 1024
              ) -> tuple[np.ndarray, list[str] | None, dict[str, str]]:
        """(features (N, D) float32, the file of each row or None, {unreadable file: why})."""
        encoder = self._encoder()

        def feats(x):
            with torch.no_grad():
                return encoder.forward_features(x).float()

        f, files, errors = self._run(feats, inputs, progress, batch)
        return f.numpy(), files, errors

    def export_onnx(self, path: str | Path, check: torch.Tensor | None = None,
                    tolerance: float = 1e-4) -> dict:
        """Write a standard ONNX file (input ``images``: float32 (batch, C, H, W) in [0, 1],
        dynamic batch; output ``probabilities``) and check it with onnxruntime against
        PyTorch on real images (``check``, default: the training images kept in the file).
        Returns {"images", "max_abs_difference", "same_classes"}."""
        try:
            import onnxruntime
        except ImportError:
            raise UsageError("ONNX export needs the optional extra: pip install "
                             "'fewlabels[onnx]' (onnx and onnxruntime)") from None
        import warnings

        check = self.samples if check is None else check
        if check is None or not len(check):
            raise UsageError("no images to check the export on: give some")
        x = self._tensor(check)
        wrapped = Averaged(copy.deepcopy(self.net).cpu(), self.shifts).eval()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx = io.BytesIO()  # checked in memory, then written whole or not at all
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (x[:2],), onnx, input_names=["images"],
                              output_names=["probabilities"], dynamo=False,
                              dynamic_axes={"images": {0: "batch"},
                                            "probabilities": {0: "batch"}})
            expected = wrapped(x).numpy()
        session = onnxruntime.InferenceSession(onnx.getvalue(),
                                               providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": x.numpy()})[0]
        result = {"images": len(x), "max_abs_difference": float(np.abs(got - expected).max()),
                  "same_classes": bool((got.argmax(1) == expected.argmax(1)).all())}
        # "not <=" so that a NaN difference is refused too
        if not result["same_classes"] or not result["max_abs_difference"] <= tolerance:
            raise UsageError(f"the ONNX model disagrees with PyTorch on {len(x)} images "
                             f"(max difference {result['max_abs_difference']:.2e}, tolerance "
                             f"{tolerance}); nothing was written to {str(path)!r}: report this")
        checkpoint.atomic_write_bytes(path, onnx.getvalue())
        return result


class EncoderInputs(Model):
    """A saved encoder seen as a Model without a head: what ``embed`` needs of it."""

    def __init__(self, encoder: torch.nn.Module, meta: dict, device: str = "cpu"):
        self.encoder, self.meta = encoder.float().eval(), meta
        self.to(device)

    def _module(self) -> torch.nn.Module:
        return self.encoder

    _encoder = _module


def load_for_embedding(path: str | Path, device: str = "cpu") -> Model:
    """A ``.model`` from ``fit``, or an ``.encoder`` from ``pretrain`` / ``compare``."""
    from .pretrain import load_encoder

    try:
        return Model.load(path, device)
    except checkpoint.WrongKind as e:
        if e.kind not in ("encoder", "autoencoder"):
            raise
    encoder, meta = load_encoder(path)
    return EncoderInputs(encoder, meta, device)
