# %% [markdown]
# # The seed notebook, re-run with fewlabels
#
# MNIST with 1% of the labels: an autoencoder pretrained on all images, a classifier
# trained on the 600 labels alone, and the frozen pretrained encoder plus one new linear
# layer trained on the same 600 labels. The cells are the notebook's own; only the import
# line changed. Run it as a script (`python examples/seed_notebook.py`) or open it as a
# notebook (jupytext / VS Code read the `# %%` cell markers).

# %%
from typing import *
import matplotlib.pyplot as plt
from fewlabels import AutoEncoder, Classifier

# %%
# Set to True to load existing models instead.
load_existing = False
device = "cpu"

# %%
if load_existing:
    auto_encoder = AutoEncoder.load("model.autoencoder")
else:
    auto_encoder = AutoEncoder(
        train_size=0.8,
        device=device,
        latent_size=10,
        lr=0.003
    )
    auto_encoder.train(2000, batch=0.05, plot_stats=True)
    auto_encoder.save("model")

# %%
auto_encoder.plot_predictions()

# %%
if load_existing:
    classifier = Classifier.load("model.classifier")
else:
    classifier = Classifier(
        train_size=0.01,
        device=device,
        latent_size=10,
        lr=0.002
    )
    classifier.train(
        epochs=700, 
        batch=0.4, 
        plot_stats=True, 
        optimize_encoder=True
        )
    classifier.save("model")

# %%
classifier.plot_predictions()

# %%
if load_existing:
    tuned_classifier = Classifier.load("pretrained.classifier")
else:
    tuned_classifier = auto_encoder.to_classifier(train_size=0.01, lr=0.05)
    tuned_classifier.train(
        epochs=700,
        batch=.5,
        plot_stats=True,
        optimize_encoder=False
    )
    tuned_classifier.save("pretrained")

# %%
tuned_classifier.plot_predictions()
