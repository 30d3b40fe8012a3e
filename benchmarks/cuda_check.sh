#!/usr/bin/env bash
# Proves the CUDA path end to end on a GPU machine: both presets with --device cuda
# (pretraining, supervised, probe, pixel baselines), a saved classifier evaluated on the
# GPU, and the throughput benchmark. Usage: benchmarks/cuda_check.sh DATA_DIR OUT_DIR
# DATA_DIR holds the four MNIST IDX files (plain or .gz); they are verified by checksum.
set -euo pipefail
data=${1:?data dir}; out=${2:?out dir}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" FEWLABELS_DATA="$data"
python3 - <<'PY'
import torch, sklearn, safetensors, tqdm, yaml, matplotlib
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
for preset in seed default; do
  start=$(date +%s)
  python3 -m fewlabels.cli compare --device cuda --preset "$preset" --seeds 0 1 2 \
      --out "$out/$preset" 2>"$out/$preset.log" | tail -8
  echo "$preset compare wall seconds: $(( $(date +%s) - start ))"
done
python3 - "$out" <<'PY'
import sys
from fewlabels import AutoEncoder
ae = AutoEncoder(device="cuda")
ae.train(200, batch=0.05, progress=False)
ae.save(f"{sys.argv[1]}/model")
ae = AutoEncoder.load(f"{sys.argv[1]}/model.autoencoder", "cuda")
assert next(ae.encoder.parameters()).is_cuda
clf = ae.to_classifier(train_size=600, lr=0.05)
clf.train(epochs=50, batch=0.5, optimize_encoder=False, progress=False)
clf.save(f"{sys.argv[1]}/probe")
print("reloaded autoencoder on cuda; probe test accuracy", round(clf.test_accuracy, 4),
      "frozen", clf.encoder_frozen, "precision", clf.runtime.precision)
PY
python3 -m fewlabels.cli evaluate "$out/probe.classifier" --device cuda
python3 -m fewlabels.cli probe --encoder "$out/default/mnist.encoder" --device cuda --seeds 0
python3 benchmarks/throughput.py --device cuda --steps 20
