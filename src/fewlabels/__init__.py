"""fewlabels: learning with few labels.

Pretrain an image encoder on unlabeled images, classify with a handful of labels, and
measure honestly when and how much that beats training on the labels alone.
"""

from .openmp import choose_wait_policy

choose_wait_policy()  # before torch loads OpenMP (the next import loads torch)

from .data import Dataset, draw_labels, load_dataset, parse_label_budget  # noqa: E402
from .errors import UsageError  # noqa: E402
from .fitting import fit  # noqa: E402
from .notebook import AutoEncoder, Classifier  # noqa: E402
from .predictor import Model  # noqa: E402
from .suggesting import suggest  # noqa: E402

__version__ = "0.1.0"
__all__ = ["AutoEncoder", "Classifier", "Dataset", "Model", "UsageError", "draw_labels", "fit",
           "load_dataset", "parse_label_budget", "suggest", "__version__"]

