"""Replay the hostile user's cases (issue 25) against the command line, and say how each ends.

Each case runs ``python -m fewlabels ...`` in a scratch folder (a digits image folder, odd
``.npz`` files, a small fitted model and tampered copies of it) and is judged by what a
careful user expects: **refused** — exit code 2, one line on stderr naming the problem,
no traceback, and nothing it must not touch changed; **said** — it runs, and says what it
skipped or could not do (the code the README documents); **kept** — a finished file is left
as it was. A traceback, a hang (past ``--timeout`` seconds), a second stderr line on a
refusal, or a changed file fails the case. One JSON document out: every case, how it
ended, and the count of failures (the exit code is 1 when any case fails). Run as root, the
read-only folder case is left out (root writes there anyway; ``tests/test_outputs.py``
checks the refusal with a folder the test cannot write).

    python benchmarks/hostile.py [--only SUBSTRING] [--out FILE]

Cases that need minutes of training, a full disk or a signal (``fit`` resumed after a
kill, a full disk under ``fit --out`` and ``export``) are covered by tests instead
(``tests/test_fitting.py``, ``tests/test_outputs.py``, ``tests/test_predictor.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from digits_folder import digits_arrays, write_digits_folder  # noqa: E402
from emit import emit  # noqa: E402

HUGE = "99999999999999999999999"


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = "refused"  # refused | said | ok
    codes: tuple[int, ...] = (2,)
    says: str = ""  # a piece of stderr (or stdout) the user must see, case-insensitive
    untouched: list[str] = field(default_factory=list)  # files that must not change
    absent: list[str] = field(default_factory=list)  # files that must not exist after
    env: dict[str, str] = field(default_factory=dict)  # environment variables it sets


def digest(path: Path) -> str | None:
    if not path.exists():
        return None
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    if not path.is_file():  # a pipe or a device: its kind, never read (a read would block)
        return f"mode:{stat.S_IFMT(path.stat().st_mode)}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(case: Case, root: Path, timeout: float) -> dict:
    before = {f: digest(root / f) for f in case.untouched}
    env = {**os.environ, "FEWLABELS_THREADS": "1", "FEWLABELS_SHARE": "0",
           "XDG_CACHE_HOME": str(root / "cache"), **case.env}
    start = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "fewlabels", *case.argv], cwd=root, env=env,
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"case": case.name, "argv": case.argv, "ended": "hang", "ok": False}
    seconds = round(time.perf_counter() - start, 1)
    lines = [ln for ln in r.stderr.replace("\r", "\n").splitlines()
             if ln.strip() and "it/s" not in ln and "s/it" not in ln]
    problems = []
    if "Traceback" in r.stderr:
        problems.append("traceback")
    if r.returncode not in case.codes:
        problems.append(f"exit code {r.returncode}, expected {case.codes}")
    if case.expect == "refused" and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected one")
    if case.says and case.says.lower() not in (r.stderr + r.stdout).lower():
        problems.append(f"does not say {case.says!r}")
    changed = [f for f in case.untouched if digest(root / f) != before[f]]
    if changed:
        problems.append(f"changed {changed}")
    present = [f for f in case.absent if (root / f).exists()]
    if present:
        problems.append(f"left {present}")
    return {"case": case.name, "argv": case.argv, "ended": case.expect if not problems
            else "failed", "ok": not problems, "problems": problems,
            "exit_code": r.returncode, "stderr": lines[-3:], "seconds": seconds}


def scratch(root: Path) -> None:
    """The folders, arrays and models the cases read."""
    write_digits_folder(root / "digits")
    images, labels = digits_arrays()
    y = np.where(np.arange(len(labels)) % 10 == 0, labels, -1)
    base = {"x_train": images[:1500], "y_train": y[:1500]}
    np.savez(root / "good.npz", **base)
    with_nan = images[:1500] / 255.0
    with_nan.flat[7] = np.nan
    np.savez(root / "nan.npz", **{**base, "x_train": with_nan})
    np.savez(root / "over-one.npz", **{**base, "x_train": images[:1500] / 255.0 * 1.5})
    np.savez(root / "duplicate-classes.npz", **base,
             classes=np.array(["a", "b", "c", "d", "e", "f", "g", "h", "a", "j"]))
    np.savez(root / "objects.npz", x_train=np.array([object()] * 3, dtype=object),
             y_train=np.zeros(3))
    (root / "empty.npz").write_bytes(b"")
    (root / "truncated.npz").write_bytes((root / "good.npz").read_bytes()[:5000])
    (root / "readonly").mkdir()
    (root / "readonly").chmod(0o555)
    (root / "a-file").write_text("not a folder\n")
    (root / "loose").mkdir()
    (root / "loose" / "labeled").mkdir()
    for p in sorted((root / "digits" / "labeled" / "1").iterdir())[:3]:
        (root / "loose" / "labeled" / p.name).write_bytes(p.read_bytes())
    (root / "not-an-image.txt").write_text("hello\n")
    for part, source, count in (("labeled/1", "labeled/1", 2), ("unlabeled", "unlabeled", 30)):
        (root / "one-class" / part).mkdir(parents=True)
        for p in sorted((root / "digits" / source).iterdir())[:count]:
            (root / "one-class" / part / p.name).write_bytes(p.read_bytes())
    (root / "old-run").mkdir()
    (root / "old-run" / "report.md").write_text("a finished report\n")
    # a small fitted model, and tampered copies of it
    subprocess.run([sys.executable, "-m", "fewlabels", "fit", "digits", "--out", "m.model",
                    "--quick", "--arms", "probe"], cwd=root, check=True,
                   capture_output=True, env={**os.environ, "FEWLABELS_THREADS": "1",
                                             "XDG_CACHE_HOME": str(root / "cache")})
    from fewlabels import checkpoint
    from fewlabels.predictor import KIND

    tensors, meta = checkpoint.load(root / "m.model", KIND)
    for name, shape in (("negative-shape", [1, -5, -5]), ("zero-shape", [1, 0, 0]),
                        ("wrong-shape", [3, 8, 8])):
        checkpoint.save(root / f"{name}.model", tensors, KIND, {**meta, "image_shape": shape})
    checkpoint.save(root / "nan-weights.model",
                    {k: (v * float("nan") if k == "head.weight" else v)
                     for k, v in tensors.items()}, KIND, meta)
    results = {"runs": [{"dataset": "mnist", "labels": 600, "seed": 0, "arm": "probe",
                         "test_accuracy": "high", "seconds": 1.0}]}
    (root / "bad-results").mkdir()
    (root / "bad-results" / "results.json").write_text(json.dumps(results))
    from PIL import Image

    Image.new("1", (30000, 30000)).save(root / "bomb.png")  # 110 KB: 900 million pixels
    os.mkfifo(root / "digits" / "unlabeled" / "pipe.png")
    os.mkfifo(root / "pipe.npy")
    os.mkfifo(root / "pipe.npz")
    (root / "digits" / "unlabeled" / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "digits" / "unlabeled" / "loop.png").symlink_to(root / "digits" / "unlabeled"
                                                            / "loop.png")


def cases() -> list[Case]:
    fit = ["fit", "digits", "--quick", "--arms", "probe"]
    return [
        # tracebacks
        Case("seed too large for an integer", ["compare", "--quick", "--seeds", HUGE],
             says="seed"),
        Case("fit --seed too large", [*fit, "--seed", HUGE, "--out", "x.model"], says="seed",
             absent=["x.model"]),
        Case("NaN batch (probe)", ["compare", "--quick", "--set", "probe.batch=nan"],
             says="batch"),
        Case("NaN batch (supervised)", ["compare", "--quick", "--set", "supervised.batch=nan"],
             says="batch"),
        Case("pretrain --epochs inf", ["pretrain", "--epochs", "inf"], says="epochs"),
        Case("report on a results.json whose accuracy is a string", ["report", "bad-results"],
             untouched=["bad-results/results.json"]),
        Case("truncated npz", ["fit", "truncated.npz", "--out", "x.model"], absent=["x.model"]),
        Case("empty npz", ["fit", "empty.npz", "--out", "x.model"], absent=["x.model"]),
        Case("npz members that are not arrays of numbers", ["fit", "objects.npz", "--out",
                                                            "x.model"], absent=["x.model"]),
        Case("--image-size 30000", [*fit, "--image-size", "30000", "--out", "x.model"],
             says="image-size", absent=["x.model"]),
        Case("model says image shape [1,-5,-5]", ["predict", "negative-shape.model",
                                                  "digits/test/3"], says="shape"),
        Case("model says image shape [1,0,0]", ["predict", "zero-shape.model",
                                                "digits/test/3"], says="shape"),
        *([] if os.geteuid() == 0 else [  # root writes into a read-only folder anyway
            Case("fit --out into a read-only folder", [*fit, "--out", "readonly/x.model"],
                 untouched=["readonly"])]),
        # silently wrong
        Case("--pretrain-epochs inf with --quick", ["compare", "--quick", "--pretrain-epochs",
                                                    "inf"], says="epochs"),
        Case("--labels 100 100", ["compare", "--quick", "--labels", "100", "100"],
             says="labels"),
        Case("--arms pixels-knn pixels-knn", ["compare", "--quick", "--arms", "pixels-knn",
                                              "pixels-knn"], says="arms"),
        Case("probe --seeds 0 0", ["probe", "--encoder", "m.model", "--seeds", "0", "0"],
             says="seeds"),
        Case("npz with NaN pixels", ["fit", "nan.npz", "--out", "x.model"], says="nan",
             absent=["x.model"]),
        Case("npz with duplicate class names", ["fit", "duplicate-classes.npz", "--out",
                                                "x.model"], absent=["x.model"]),
        Case("npz with floats up to 1.5", ["fit", "over-one.npz", "--out", "x.model"],
             absent=["x.model"]),
        Case("predict on a non-image file", ["predict", "m.model", "not-an-image.txt"],
             expect="said", codes=(1,), says="not-an-image.txt"),
        Case("predict on a glob that matches nothing", ["predict", "m.model", "nothing/*.png"],
             expect="said", codes=(1,), says="nothing"),
        Case("predict with NaN weights", ["predict", "nan-weights.model", "digits/test/3"],
             says="non-finite"),
        Case("export with NaN weights", ["export", "nan-weights.model", "--onnx", "x.onnx"],
             says="non-finite", absent=["x.onnx"]),
        Case("model whose image shape disagrees with its network",
             ["predict", "wrong-shape.model", "digits/test/3"]),
        # finished work lost
        Case("compare --out a folder holding a report.md", ["compare", "--quick", "--out",
                                                            "old-run"],
             untouched=["old-run/report.md", "old-run"]),
        Case("fit --out an existing folder", [*fit, "--out", "digits"], untouched=["digits"]),
        Case("fit --out under a file", [*fit, "--out", "a-file/x.model"],
             untouched=["a-file"]),
        Case("fit --out an existing model, no --force", [*fit, "--out", "m.model"],
             says="--force", untouched=["m.model"]),
        # found in a later session: outputs checked only after the work
        Case("pretrain --out an existing file, no --force", ["pretrain", "--out", "m.model"],
             says="--force", untouched=["m.model"]),
        Case("pretrain --out a folder", ["pretrain", "--out", "digits"], says="is a folder",
             untouched=["digits"]),
        Case("pretrain --out under a file", ["pretrain", "--out", "a-file/x.encoder"],
             untouched=["a-file"]),
        Case("embed --out a folder", ["embed", "m.model", "digits/test/3", "--out", "digits"],
             says="is a folder", untouched=["digits"]),
        Case("embed --out a named pipe (a rename would replace it, as /dev/null as root)",
             ["embed", "m.model", "digits/test/3", "--out", "pipe.npy"],
             says="is a named pipe, not a file", untouched=["pipe.npy"]),
        Case("suggest --links under a file", ["suggest", "digits", "--budget", "3", "--model",
                                              "m.model", "--links", "a-file/links"],
             says="cannot be made", untouched=["a-file"]),
        Case("suggest --classes above the images", ["suggest", "digits", "--budget", "3",
                                                    "--model", "m.model", "--strategy",
                                                    "coverage", "--classes", "99999"],
             says="--classes 99999 is out of range"),
        Case("fit --out a name the file system takes but not its temporary files",
             [*fit, "--out", "m" * 243 + ".model"], says="files written beside it",
             absent=["m" * 243 + ".model"]),
        Case("fit on an .npz that is a named pipe", ["fit", "pipe.npz", "--out", "x.model"],
             says="is not a regular file", absent=["x.model"]),
        # hangs
        Case("--set pretrain.epochs=inf", [*fit, "--set", "pretrain.epochs=inf", "--out",
                                           "x.model"], says="epochs", absent=["x.model"]),
        # half-written files
        Case("embed where every input fails", ["embed", "m.model", "not-an-image.txt",
                                               "--out", "f.npy"],
             expect="said", codes=(1, 2), absent=["f.npy", "f.files.txt"]),
        # misleading messages
        Case("images directly in labeled/", ["fit", "loose", "--out", "x.model"],
             says="labeled", absent=["x.model"]),
        Case("fit on a built-in dataset's name", ["fit", "mnist", "--out", "x.model"],
             absent=["x.model"]),
        # found in a later session
        Case("export --onnx a folder", ["export", "m.model", "--onnx", "digits"],
             says="is a folder", untouched=["digits"]),
        Case("an image too large to decode (a decompression bomb)",
             ["predict", "m.model", "bomb.png"], expect="said", codes=(1,), says="too large"),
        # a pipe, a dangling and a looping link among the images: listed and skipped
        Case("a FIFO and broken links named *.png in the folder",
             ["predict", "m.model", "digits/unlabeled"], expect="said", codes=(1,),
             says="pipe.png"),
        # found this session: an empty path (an unset shell variable) read as the current
        # folder or as the option left out, and a traceback from embed
        Case("compare --out ''", ["compare", "--quick", "--out", ""], says="empty path",
             absent=["runs"]),
        Case("embed --out ''", ["embed", "m.model", "digits/test/3", "--out", ""],
             says="empty path"),
        Case("embed --out .", ["embed", "m.model", "digits/test/3", "--out", "."],
             says="is a folder"),
        # found in a later session: tracebacks, a run that trained toward nothing
        Case("pretrain --width 100000 (720 GB for one layer)",
             ["pretrain", "--preset", "default", "--width", "100000", "--out", "w.encoder"],
             says="use 1..1024", absent=["w.encoder"]),
        Case("an MLP encoder of 100 million units (292 GiB)",
             ["pretrain", "--epochs", "0.01", "--set", "encoder=mlp",
              "--set", "encoder_options.hidden=[100000000]", "--out", "w.encoder"],
             says="out of memory", absent=["w.encoder"]),
        Case("label spreading with more neighbours than images",
             ["compare", "--quick", "--arms", "pixels-labelspreading", "--out", "run-k",
              "--set", "pixels_labelspreading.k=99999999"], says="use 1..59999",
             absent=["run-k"]),
        Case("SCAN with 100,000 clusters", [*fit, "--set",
                                            "pretrain.refine_options.clusters=100000",
                                            "--out", "x.model"],
             says="use 2..1000", absent=["x.model"]),
        # found in the session after: 1-pixel images trained to chance, then a NaN loss
        Case("semisupervised on images reduced to 1 pixel",
             ["compare", "--quick", "--arms", "semisupervised", "--out", "run-r",
              "--set", "semisupervised.reduced_side=0.01"], says="use 0.125 or more",
             absent=["run-r"]),
        # the command line's session of its own (session.py): its switch misspelt
        Case("FEWLABELS_OWN_SESSION=yes", ["compare", "--quick", "--out", "run-s"],
             env={"FEWLABELS_OWN_SESSION": "yes"}, says="is not 0 or 1: set 0",
             absent=["run-s"]),
        # found in the session after: one draw counted three times (an interval [x, x]), a
        # hint to the wrong -h, a folder begun refused for an option nobody gave
        Case("--labels all with three seeds", ["compare", "--quick", "--labels", "all",
                                               "--arms", "pixels-knn", "--out", "run-a"],
             says="each of the 3 seeds would draw the same labels", absent=["run-a"]),
        Case("a word no option of the subcommand takes", ["evaluate", "m.model", "digits"],
             says="`fewlabels evaluate -h` lists the options"),
        Case("suggest where labeled/ holds one class folder",
             ["suggest", "one-class", "--budget", "3", "--model", "m.model"], expect="ok",
             codes=(0,), says="3 of"),
        Case("suggest --strategy coverage where labeled/ holds one class folder",
             ["suggest", "one-class", "--budget", "3", "--model", "m.model", "--strategy",
              "coverage"], says="holds 1 class folder, too few to count them"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="run the cases whose name holds this")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--out")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fewlabels-hostile-") as tmp:
        root = Path(tmp)
        scratch(root)
        chosen = [c for c in cases() if not args.only or args.only in c.name]
        results = [run(c, root, args.timeout) for c in chosen]
        (root / "readonly").chmod(0o755)
    failed = [r["case"] for r in results if not r["ok"]]
    emit({"cases": len(results), "failed": len(failed), "failures": failed,
          "results": results}, args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
