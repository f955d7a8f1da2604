#!/usr/bin/env bash
# Issue 13: what a 30-minute cifar10-cpu run on an image folder gives, measured the same way
# for the model and for real images. Needs the run (trained with data.val_size=500 so that the
# folder's held-out images are 500 validation + 500 test = 1,000):
#
#   ncsn train --config cifar10-cpu --workdir runs/cifar10-cpu \
#     --set data.dataset=folder:../shared/data/cifar10-jpeg-5k --set data.val_size=500
#   bash benchmarks/results_cifar10_cpu.sh [RUN] [OUTDIR]
#
# Writes OUTDIR (default docs/results/cifar10-cpu): samples_100.png (the config's sampler,
# seed 0), report.json (Inception FID/KID of 1,000 samples against the 1,000 held-out images),
# real_train.json (1,000 real training images against the same: the floor at this N),
# dsm.json (per-level denoiser MSE beside the mean image on the validation images).
set -euo pipefail
BIN=${BIN:-.venv/bin}
RUN=${1:-runs/cifar10-cpu}
OUT=${2:-docs/results/cifar10-cpu}
mkdir -p "$OUT"
t() { /usr/bin/time -f "$1: %e s" "${@:2}"; }
# the held-out images and 1,000 training images, as the run's config reads them
t "npz" "$BIN/python" - "$RUN" <<'PY'
import sys
import torch
from ncsn.api import load_checkpoint
from ncsn.data import as_tensor, get_dataset
from ncsn.imaging import save_npz

run = sys.argv[1]
_, cfg = load_checkpoint(run)
d = cfg.data
load = lambda split: as_tensor(get_dataset(d.dataset, root=d.root, split=split,
    image_size=d.image_size, channels=d.channels, val_size=d.val_size))[0]
held = torch.cat([load("val"), load("test")])
train = load("train")
pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:1000]
print(f"held-out {len(held)} images, training {len(train)}; 1000 picked with seed 0")
save_npz(f"{run}/heldout.npz", held)
save_npz(f"{run}/real_train_1000.npz", train[pick])
PY
t "sample 100" "$BIN/ncsn" sample --checkpoint "$RUN" --n 100 --seed 0 --nrow 10 \
  --out "$OUT/samples_100.png"
t "sample 1000" "$BIN/ncsn" sample --checkpoint "$RUN" --n 1000 --seed 0 --nrow 40 \
  --out "$RUN/samples_1000.png" --save-npz "$RUN/samples_1000.npz"
t "eval samples" "$BIN/ncsn" eval --samples "$RUN/samples_1000.npz" \
  --ref-samples "$RUN/heldout.npz" --metrics fid,kid --out "$OUT/report.json"
t "eval real" "$BIN/ncsn" eval --samples "$RUN/real_train_1000.npz" \
  --ref-samples "$RUN/heldout.npz" --metrics fid,kid --out "$OUT/real_train.json"
t "eval dsm" "$BIN/ncsn" eval --checkpoint "$RUN" --metrics dsm --out "$OUT/dsm.json"
