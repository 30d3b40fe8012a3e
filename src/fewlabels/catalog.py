"""The names the command line offers, kept where nothing heavy is imported, so that
``fewlabels --help`` and a mistyped option answer at once, without loading torch: each
arm's one-line description, in the registry's order (``arms.ARMS`` takes them from here),
and the label-selection strategies (``selection``)."""

ARM_ABOUT = {
    "probe": "one linear layer on the frozen pretrained encoder",
    "finetune": "the pretrained encoder and a fitted linear layer, all trained on the labels",
    "semisupervised": "the pretrained network trained on the labels and the unlabeled pool "
                      "(FixMatch)",
    "supervised": "the same encoder trained from scratch on the labels alone",
    "pixels-logreg": "logistic regression on raw pixels",
    "pixels-knn": "k-nearest neighbours on raw pixels",
    "pixels-labelspreading": "label spreading over a nearest-neighbour graph of every "
                             "training image's pixels",
    "ceiling": "the supervised network on every training label but a validation split, "
               "trained to its plateau, once per dataset",
}

STRATEGIES = ("random", "typical", "coverage")  # label selection, read no label
