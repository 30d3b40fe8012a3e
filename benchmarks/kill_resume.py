"""A comparison killed with SIGKILL and run again ends with the same results.json as one
that never stopped (timings aside), without pretraining again once the encoder was saved.

Runs ``fewlabels compare --quick`` three times on real MNIST: whole; killed during
pretraining, then resumed; killed after some runs had finished, then resumed (pretraining
must not run again: its encoder is on disk). Prints JSON: for each kill, what was on disk
when it struck, whether the resumed results equal the whole run's, and the seconds.
Usage: python benchmarks/kill_resume.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emit import emit

ARGS = ["compare", "--quick", "--save-every", "5", "--arms", "probe", "supervised", "pixels-logreg",
        "--seeds", "0", "1", "--set", "pretrain.pool=6000", "--set", "feature_map=0"]


def run(out: Path, kill_when=None) -> dict:
    """Run the comparison into ``out``; with ``kill_when(out)``, SIGKILL it once that is
    true. Returns what happened."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fewlabels", *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    if kill_when is not None:
        while proc.poll() is None:
            if kill_when(out):
                proc.send_signal(signal.SIGKILL)
                killed = {"runs_on_disk": _lines(out / "runs.jsonl"),
                          "files": sorted(p.name for p in out.iterdir())}
                break
            time.sleep(0.05)
    log = proc.communicate()[0]
    return {"returncode": proc.returncode, "seconds": round(time.perf_counter() - t, 1),
            "killed": killed, "pretrained": "pretraining simclr" in log,
            "resumed_runs_line": next((x for x in log.splitlines() if "resuming" in x), None)}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _without_timings(path: Path) -> dict:
    results = json.loads(path.read_text())

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if "seconds" not in k}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip({k: results[k] for k in ("runs", "summary", "paired", "data")})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    from fewlabels.runtime import cpu_name

    report = {"cpu": cpu_name(), "command": "fewlabels " + " ".join(ARGS)}
    with tempfile.TemporaryDirectory(prefix="fewlabels-kill-") as tmp:
        whole = Path(tmp) / "whole"
        report["whole"] = run(whole)
        cases = {"during pretraining": lambda out: (out / "mnist.encoder.state").exists(),
                 "after two runs": lambda out: _lines(out / "runs.jsonl") >= 2}
        for name, when in cases.items():
            out = Path(tmp) / name.replace(" ", "-")
            first = run(out, when)
            second = run(out)
            report[name] = {
                "killed": first, "resumed": second,
                "same_results": _without_timings(out / "results.json")
                == _without_timings(whole / "results.json")}
    emit(report, args.out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
