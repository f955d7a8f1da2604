#!/usr/bin/env bash
# Standard Inception FID/KID (the TF inception-2015-12-05 network that `make setup` installs)
# of the mnist-cpu run and of the digits default, with the domain metrics beside them:
#
#   bash benchmarks/inception_fid.sh MNIST_RUN [DIGITS_RUN]
#   e.g. bash benchmarks/inception_fid.sh runs/mnist-cpu runs/digits
#   bash benchmarks/inception_fid.sh - runs/digits        # the digits rows only
#   bash benchmarks/inception_fid.sh runs/mnist-cpu -     # the mnist-cpu rows only
#   SAMPLE_ARGS="--sampler ancestral" bash benchmarks/inception_fid.sh runs/mnist-cpu
#                        # 10,000 MNIST samples with 95 evaluations each instead of the
#                        # config's ALD (476): 18 minutes (measured) instead of about 90
#
# MNIST_RUN / DIGITS_RUN: a run folder or checkpoint file (DIGITS_RUN default runs/digits,
# trained first if absent). Writes docs/results/inception/*.json (one report per row, each with
# its protocol: weights hash, N, reference split, size and content hash) and prints each
# command's wall-clock and CPU time. Every image goes through Inception at 299x299 (digits'
# 8x8 and MNIST's 28x28 are upsampled, as in any FID); 0.14 CPU-s per image on one core of the
# development machine (benchmarks/inception_throughput.py, the last line here); the mnist-cpu
# rows took 65 minutes on 2 quiet cores (sampling 18, each of the three evaluations 15-17).
# Samples (10,000 MNIST: ~31 MB) are kept in $WORK (default runs/inception_fid).
set -euo pipefail
MNIST_RUN=${1:?usage: bash benchmarks/inception_fid.sh MNIST_RUN [DIGITS_RUN]}
DIGITS_RUN=${2:-runs/digits}
BIN=${BIN:-.venv/bin}
BS=${BS:-50} # Inception images per batch: ~20 MiB of activations each on the CPU
WORK=${WORK:-runs/inception_fid}
OUT=docs/results/inception
export NCSN_DATA_ROOT=${NCSN_DATA_ROOT:-../shared/data}
METRICS=fid,kid,dfid,dkid,dis,classes
mkdir -p "$OUT" "$WORK"

timed() { # LABEL COMMAND...: run it, print wall-clock and CPU seconds
  local label=$1
  shift
  /usr/bin/time -f "$label: %e s wall, %U s user, %S s sys, max RSS %M KiB" "$@"
}

score() { # NPZ N DATASET NAME: Inception + domain metrics of the first N images vs the test split
  timed "eval $4" "$BIN/ncsn" eval --samples "$1" --n "$2" --data "$3" --ref-split test \
    --metrics "$METRICS" --batch-size "$BS" --out "$OUT/$4.json"
}

real_train() { # DATASET N NPZ: N training images (fixed seed) as an .npz, the floor at that N
  "$BIN/python" - "$1" "$2" "$3" <<'PY'
import sys

import torch

from ncsn.data import as_tensor, get_dataset
from ncsn.imaging import save_npz

images = as_tensor(get_dataset(sys.argv[1], split="train"))[0]
pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: int(sys.argv[2])]
save_npz(sys.argv[3], images[pick])
PY
}

# mnist-cpu: 10,000 samples (image k of seed 0 does not depend on N: the first 1,000 are the
# 1,000 of benchmarks/results.sh), scored at N = 1,000 and 10,000 against the MNIST test split
# (10,000 images; its Inception statistics are computed once, then cached by content hash).
if [ "$MNIST_RUN" != - ]; then
  # shellcheck disable=SC2086  # SAMPLE_ARGS: several words on purpose
  timed "sample mnist 10k" "$BIN/ncsn" sample --checkpoint "$MNIST_RUN" --n 10000 --seed 0 \
    --nrow 100 --out "$WORK/mnist_samples_10k.png" --save-npz "$WORK/mnist_samples_10k.npz" \
    ${SAMPLE_ARGS:-}
  score "$WORK/mnist_samples_10k.npz" 1000 mnist mnist_samples_1k
  score "$WORK/mnist_samples_10k.npz" 10000 mnist mnist_samples_10k
  real_train mnist 10000 "$WORK/mnist_real_train_10k.npz"
  score "$WORK/mnist_real_train_10k.npz" 10000 mnist mnist_real_train_10k
fi

# digits default: 1,000 samples and 1,000 real training images against the test split (359).
if [ "$DIGITS_RUN" != - ]; then
  [ -e "$DIGITS_RUN" ] || "$BIN/ncsn" train --config digits --workdir "$DIGITS_RUN"
  timed "sample digits 1k" "$BIN/ncsn" sample --checkpoint "$DIGITS_RUN" --n 1000 --seed 0 \
    --nrow 40 --out "$WORK/digits_samples_1k.png" --save-npz "$WORK/digits_samples_1k.npz"
  score "$WORK/digits_samples_1k.npz" 1000 digits digits_samples_1k
  real_train digits 1000 "$WORK/digits_real_train_1k.npz"
  score "$WORK/digits_real_train_1k.npz" 1000 digits digits_real_train_1k
fi

OMP_NUM_THREADS=1 "$BIN/python" benchmarks/inception_throughput.py --batches 3 --batch-size 10
