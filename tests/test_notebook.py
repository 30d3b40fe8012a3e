"""The seed notebook's cells run against fewlabels with only the import line changed."""

import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parent.parent / "examples" / "seed_notebook.py"


def test_the_import_line_is_the_only_change():
    text = NOTEBOOK.read_text()
    assert "from fewlabels import AutoEncoder, Classifier" in text
    for call in ("AutoEncoder(", "auto_encoder.train(2000, batch=0.05, plot_stats=True)",
                 'auto_encoder.save("model")', 'AutoEncoder.load("model.autoencoder")',
                 'Classifier.load("model.classifier")',
                 "auto_encoder.to_classifier(train_size=0.01, lr=0.05)",
                 "optimize_encoder=False", "tuned_classifier.plot_predictions()"):
        assert call in text


@pytest.mark.parametrize("load_existing", [False, True])
def test_notebook_cells_run(tmp_path, monkeypatch, mnist, load_existing):
    # Real MNIST, with the notebook's epoch counts cut so the test takes seconds.
    code = NOTEBOOK.read_text()
    code = re.sub(r"\.train\(2000,", ".train(5,", code)
    code = code.replace("epochs=700", "epochs=3")
    monkeypatch.chdir(tmp_path)
    if load_existing:
        exec(compile(code, str(NOTEBOOK), "exec"), {"__name__": "__main__"})
        code = code.replace("load_existing = False", "load_existing = True")
    scope = {"__name__": "__main__"}
    exec(compile(code, str(NOTEBOOK), "exec"), scope)
    for name in ("model.autoencoder", "model.classifier", "pretrained.classifier"):
        assert (tmp_path / name).is_file()
    assert scope["tuned_classifier"].encoder_frozen
    assert scope["classifier"].test_accuracy > 0.2  # 600 labels: far above chance (0.1)
    assert len(scope["classifier"].labeled) == 600
