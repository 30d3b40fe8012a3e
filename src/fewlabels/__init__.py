"""fewlabels: learning with few labels.

Pretrain an image encoder on unlabeled images, classify with a handful of labels, and
measure honestly when and how much that beats training on the labels alone.

The public names load on first use (``fewlabels.fit`` imports torch then), so that the
command line's help and its usage errors answer without loading torch.
"""

import importlib

from .openmp import choose_wait_policy

choose_wait_policy()  # before anything loads torch and with it OpenMP

from .errors import UsageError as UsageError  # noqa: E402  (light: no torch)

__version__ = "0.1.0"
_MODULE_OF = {"Dataset": "data", "draw_labels": "data", "load_dataset": "data",
              "parse_label_budget": "data", "fit": "fitting", "AutoEncoder": "notebook",
              "Classifier": "notebook", "Model": "predictor", "suggest": "suggesting"}
__all__ = sorted([*_MODULE_OF, "UsageError", "__version__"])


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'fewlabels' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
