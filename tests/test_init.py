"""The package's public face: what ``import fewlabels`` gives and what it does not load."""

import subprocess
import sys


def fresh_python(code: str) -> subprocess.CompletedProcess:
    """``code`` run by a new interpreter, which has imported nothing yet."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)


def test_import_exposes_the_api_and_loads_it_on_first_use():
    code = ("import sys, fewlabels; "
            "print(sorted(set(fewlabels.__all__) - set(dir(fewlabels))), "
            "'torch' in sys.modules); "
            "from fewlabels import Model, fit; "
            "print(fit.__module__, fewlabels.Model is Model, 'matplotlib' in sys.modules)")
    out = fresh_python(code)
    assert out.stdout.split() == ["[]", "False", "fewlabels.fitting", "True", "False"]


def test_the_help_and_a_usage_error_answer_without_loading_torch():
    """`fewlabels --help` took seconds of CPU importing torch to list the arms."""
    code = ("import sys; from fewlabels.cli import main\n"
            "for argv in (['--help'], ['compare', '--help'], ['suggest', '--help'],\n"
            "             ['compare', '--nope']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as e:\n"
            "        print('exit', e.code, file=sys.stderr)\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    out = fresh_python(code)
    assert out.stderr.split("\n")[-2] == "False", out.stderr
    assert out.stderr.count("exit 0") == 3 and "exit 2" in out.stderr
    assert "semisupervised: the pretrained network trained on the labels" in " ".join(
        out.stdout.split())  # the help wraps its lines
