"""The package's public face: what ``import fewlabels`` gives and what it does not load."""

import subprocess
import sys


def test_import_exposes_the_api_without_loading_matplotlib():
    code = ("import sys, fewlabels; "
            "print(sorted(set(fewlabels.__all__) - set(dir(fewlabels))), "
            "'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["[]", "False"]
