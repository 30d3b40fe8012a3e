"""Your own images, timed on real MNIST: (1) a folder of 50,000 small PNGs decoded and
cached by ``load_user_data`` (fresh cache; peak resident memory of the process doing it),
then loaded again from the cache; (2) ``fewlabels predict``'s path, ``Model.predict`` on
10,000 PNG files, decoding included, with the default recipe's network (untrained: its
weights do not change the time). Each part runs in its own process so its peak memory is
its own. Prints JSON (images per second, seconds, peak RSS in MiB, the CPU).
Usage: python benchmarks/images.py [--train 50000] [--test 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from emit import emit

# the stated bound on the decoding process's peak memory (50,000 28×28 images: the decoded
# array is 39 MB; Python, torch and Pillow are the rest)
RSS_BOUND_MIB = 512


def write_pngs(root: Path, train: int, test: int) -> None:
    from PIL import Image

    from fewlabels.data import load_dataset

    ds = load_dataset("mnist")
    x, y = ds.train_images[:train, 0].numpy(), ds.train_labels[:train].numpy()
    labeled = set(range(0, train, max(1, train // 600)))
    for i in range(train):
        folder = root / "folder" / ("labeled" if i in labeled else "unlabeled") / (
            str(y[i]) if i in labeled else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:05d}.png")
    (root / "predict").mkdir()
    for i in range(test):
        Image.fromarray(ds.test_images[i, 0].numpy()).save(root / "predict" / f"{i:05d}.png")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_part(root: Path) -> dict:
    from fewlabels.userdata import load_user_data

    t = time.perf_counter()
    ds, skipped = load_user_data(root / "folder", progress=False)
    first = time.perf_counter() - t
    t = time.perf_counter()
    load_user_data(root / "folder", progress=False)
    cached = time.perf_counter() - t
    n = len(ds.train_images)
    return {"images": n, "seconds_decode_and_cache": round(first, 2),
            "images_per_second": round(n / first), "seconds_from_cache": round(cached, 2),
            "skipped": len(skipped.files), "peak_rss_mib": round(peak_mib()),
            "peak_rss_bound_mib": RSS_BOUND_MIB, "within_bound": peak_mib() < RSS_BOUND_MIB}


def predict_part(root: Path) -> dict:
    import torch

    from fewlabels.config import load_preset
    from fewlabels.encoders import ClassifierNet, build_encoder
    from fewlabels.predictor import Model

    p = load_preset("default").pretrain
    torch.manual_seed(0)
    net = ClassifierNet(build_encoder(p.encoder, (1, 28, 28), **p.encoder_options), 10)
    model = Model(net, {"classes": [str(c) for c in range(10)], "image_shape": [1, 28, 28]})
    files = sorted(str(f) for f in (root / "predict").glob("*.png"))
    model.predict(files[:256])  # warm-up
    t = time.perf_counter()
    pred = model.predict(files)
    seconds = time.perf_counter() - t
    assert len(pred.classes) == len(files) and not pred.errors
    return {"images": len(files), "seconds": round(seconds, 2),
            "images_per_second": round(len(files) / seconds),
            "threads": torch.get_num_threads(), "peak_rss_mib": round(peak_mib())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--out")
    ap.add_argument("--part", choices=["decode", "predict"], help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from fewlabels.runtime import cpu_name, set_threads

    set_threads()  # as the CLI does: FEWLABELS_THREADS, else the CPUs allowed
    if args.part:  # a child process: one part, its JSON on stdout
        part = decode_part if args.part == "decode" else predict_part
        print(json.dumps(part(Path(args.root))))
        return

    with tempfile.TemporaryDirectory(prefix="fewlabels-images-") as tmp:
        root = Path(tmp)
        write_pngs(root, args.train, args.test)
        result = {"cpu": cpu_name(), "folder": {}, "predict": {}}
        env_cache = {"XDG_CACHE_HOME": str(root / "cache")}
        for part in ("decode", "predict"):
            out = subprocess.run([sys.executable, __file__, "--part", part, "--root", tmp],
                                 capture_output=True, text=True, check=True,
                                 env={**__import__("os").environ, **env_cache})
            result["folder" if part == "decode" else "predict"] = json.loads(
                out.stdout.strip().splitlines()[-1])
    emit(result, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
