"""fewlabels: learning with few labels.

Pretrain an image encoder on unlabeled images, classify with a handful of labels, and
measure honestly when and how much that beats training on the labels alone.
"""

from .data import Dataset, draw_labels, load_dataset, parse_label_budget
from .errors import UsageError
from .fitting import fit
from .models import AutoEncoder, Classifier
from .predictor import Model

__version__ = "0.1.0"
__all__ = ["AutoEncoder", "Classifier", "Dataset", "Model", "UsageError", "draw_labels", "fit",
           "load_dataset", "parse_label_budget", "__version__"]

