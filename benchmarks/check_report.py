"""Open a run's report.html in a headless Chromium and check that every image loaded.

A copy of the report gets a small script that, once the page has loaded, counts the
images that decoded (``complete`` and a non-zero natural width); Chromium prints the
resulting DOM, and a full-page screenshot is written beside it for a person to look at.
Prints JSON. Usage: python benchmarks/check_report.py RUN_DIR [--browser chromium]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK = """<script>
window.addEventListener("load", () => {
  const all = Array.from(document.images);
  const ok = all.filter(i => i.complete && i.naturalWidth > 0);
  const p = document.createElement("pre");
  p.id = "image-check";
  p.textContent = `IMAGES-LOADED ${ok.length}/${all.length}`;
  document.body.appendChild(p);
});
</script>"""


BROWSERS = ["chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"]


def find_browser(name: str | None) -> str:
    for candidate in [name] if name else BROWSERS:
        path = shutil.which(candidate)
        if path:
            return path
    sys.exit("no headless Chromium found: install one (e.g. the Debian package "
             "chromium-headless-shell) or pass --browser")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--browser")
    args = p.parse_args()
    report = Path(args.run_dir) / "report.html"
    browser = find_browser(args.browser)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000"]
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
        dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        shot = Path(args.run_dir) / "report-screenshot.png"
        subprocess.run([browser, *flags, "--window-size=1200,8000",
                        f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120)
    found = re.search(r"IMAGES-LOADED (\d+)/(\d+)", dom)
    loaded, total = (int(found[1]), int(found[2])) if found else (0, -1)
    print(json.dumps({"benchmark": "report_in_headless_browser", "report": str(report),
                      "images": total, "loaded": loaded, "all_loaded": loaded == total > 0,
                      "screenshot": str(shot) if shot.is_file() else None}, indent=2))
    sys.exit(0 if loaded == total > 0 else 1)


if __name__ == "__main__":
    main()
