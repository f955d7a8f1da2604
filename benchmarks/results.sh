#!/usr/bin/env bash
# Reproduce docs/results.md: evaluation of the digits default and of the mnist-cpu run.
#
#   bash benchmarks/results.sh digits   # trains runs/digits first if it is absent
#   bash benchmarks/results.sh mnist    # needs runs/mnist-cpu (ncsn train --config mnist-cpu) and
#                                       # MNIST under $NCSN_DATA_ROOT (default ../shared/data)
# Writes docs/results/NAME/: samples.png, report.json (vs the test split), report_vs_train.json,
# report_nn_grid*.png, samplers.json/.png, real_train_images.json (1000 real training images scored
# the same way: the best a model can get at this N).
set -euo pipefail
BIN=${BIN:-.venv/bin}
export NCSN_DATA_ROOT=${NCSN_DATA_ROOT:-../shared/data}
OUT=docs/results
METRICS=dfid,dkid,dis,classes,dsm,nn

evaluate() { # NAME RUN N_EVAL N_SAMPLERS
  local name=$1 run=$2 n=$3
  mkdir -p "$OUT/$name"
  /usr/bin/time -f "sample: %e s" "$BIN/ncsn" sample --checkpoint "$run" --n "$n" --seed 0 \
    --nrow 20 --out "$OUT/$name/samples.png" --save-npz "$run/eval_samples.npz"
  "$BIN/python" -c "import sys; from ncsn.imaging import load_npz, save_image_grid as g; \
x = load_npz(sys.argv[1])[:100]; g(x, sys.argv[2], nrow=10)" \
    "$run/eval_samples.npz" "$OUT/$name/samples_100.png"
  /usr/bin/time -f "eval vs test: %e s" "$BIN/ncsn" eval --checkpoint "$run" \
    --samples "$run/eval_samples.npz" --n "$n" --metrics "$METRICS" --ref-split test \
    --out "$OUT/$name/report.json"
  /usr/bin/time -f "eval vs train: %e s" "$BIN/ncsn" eval --checkpoint "$run" \
    --samples "$run/eval_samples.npz" --n "$n" --metrics dfid,dkid --ref-split train \
    --out "$OUT/$name/report_vs_train.json"
  /usr/bin/time -f "samplers: %e s" "$BIN/python" benchmarks/compare_samplers.py \
    --checkpoint "$run" --n "$4" --out "$OUT/$name/samplers.json"
}

real_images() { # NAME DATASET N: the same metrics for N real training images (the floor)
  local name=$1 dataset=$2 n=$3
  "$BIN/python" - "$dataset" "$n" "$OUT/$name/real_train_images.npz" <<'PY'
import sys

import torch

from ncsn.data import as_tensor, get_dataset
from ncsn.imaging import save_npz

images = as_tensor(get_dataset(sys.argv[1], split="train"))[0]
pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: int(sys.argv[2])]
save_npz(sys.argv[3], images[pick])
PY
  "$BIN/ncsn" eval --samples "$OUT/$name/real_train_images.npz" --data "$dataset" --n "$n" \
    --metrics dfid,dkid,dis,classes --ref-split test --out "$OUT/$name/real_train_images.json"
  rm "$OUT/$name/real_train_images.npz"
}

case ${1:-digits} in
  digits)
    [ -e runs/digits/checkpoints/latest ] || "$BIN/ncsn" train --config digits --workdir runs/digits
    evaluate digits runs/digits 1000 500
    real_images digits digits 1000
    ;;
  mnist)
    evaluate mnist "${RUN:-runs/mnist-cpu}" 1000 500
    real_images mnist mnist 1000
    ;;
  *) echo "usage: $0 digits|mnist" >&2; exit 2 ;;
esac
