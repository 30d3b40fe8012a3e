#!/usr/bin/env bash
# Proves the CUDA path end to end on a GPU machine: the seed protocol with --device cuda
# (pretraining, supervised, probe, pixel baselines), then a saved classifier evaluated
# on the GPU. Usage: benchmarks/cuda_check.sh DATA_DIR OUT_DIR
# DATA_DIR holds the four MNIST IDX files (plain or .gz); they are verified by checksum.
set -euo pipefail
data=${1:?data dir}; out=${2:?out dir}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python3 - <<'PY'
import torch, sklearn, safetensors, tqdm, yaml, matplotlib
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
start=$(date +%s)
python3 -m fewlabels.cli compare --device cuda --preset seed --seeds 0 1 2 \
    --data-dir "$data" --out "$out/run" 2>"$out/progress.log"
echo "compare wall seconds: $(( $(date +%s) - start ))"
python3 - "$data" "$out" <<'PY'
import sys, torch
from fewlabels import AutoEncoder
ae = AutoEncoder.load(f"{sys.argv[2]}/run/model.autoencoder", "cuda", data_dir=sys.argv[1])
assert next(ae.encoder.parameters()).is_cuda
clf = ae.to_classifier(train_size=600, lr=0.05)
clf.train(epochs=50, batch=0.5, optimize_encoder=False, progress=False)
clf.save(f"{sys.argv[2]}/probe")
print("reloaded autoencoder on cuda; probe test accuracy", round(clf.test_accuracy, 4),
      "frozen", clf.encoder_frozen, "precision", clf.runtime.precision)
PY
python3 -m fewlabels.cli evaluate "$out/probe.classifier" --device cuda --data-dir "$data"
