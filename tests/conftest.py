import os
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# examples/digits_folder.py writes scikit-learn's digits as an image folder, for the README
# and for the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one torch thread each, or they fight over the cores.
    torch.set_num_threads(1)
    os.environ["FEWLABELS_THREADS"] = "1"  # the CLI's own choice, in-process and in children


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test leaves open (plots return them, as in a notebook) are closed after it."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, verified by checksum (fetched into the cache if it is not there)."""
    from fewlabels.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture
def mnist_slice(mnist):
    """A small real slice of MNIST: 2,000 training and 500 test images."""
    return mnist.subset(train=2000, test=500)


@pytest.fixture
def tiny_encoder(tmp_path, mnist):
    """The path of an untrained MNIST conv encoder of width 4 (seed 0), saved as pretraining
    saves one: for commands that need an encoder file, not a good one."""
    from fewlabels.config import load_preset
    from fewlabels.encoders import build_encoder
    from fewlabels.pretrain import save_encoder
    from fewlabels.train import History

    p = load_preset("default").pretrain
    p.encoder_options = {"width": 4}
    torch.manual_seed(0)
    return save_encoder(tmp_path / "e.encoder", build_encoder("conv", (1, 28, 28), width=4), p,
                        mnist, History())
