#!/usr/bin/env bash
# What a session runs on a lent GPU machine (the `device` tool): issue 10 goal 3 (official
# code vs ncsn images/s on the CIFAR-10 network) and issue 11 sections 4-5 (variants of
# mnist-cpu trained for the steps a CPU hour gives, then quality against evaluations).
#
#   bash benchmarks/gpu_lease.sh speed OUTDIR     # gpu_official_vs_ncsn.py
#   bash benchmarks/gpu_lease.sh sweep OUTDIR     # cpu_hour_sweep.py --steps 10000 --jobs 8
#   bash benchmarks/gpu_lease.sh nfe OUTDIR       # quality_vs_nfe.py on two checkpoints
#
# Needs: the official code in $OFFICIAL (default .bench/official-ncsn, a checkout of
# ermongroup/ncsn) and MNIST as .gz files in $MNIST_GZ (default .bench/mnist) or already
# unpacked under $NCSN_DATA_ROOT. DEVICE (default cuda), STEPS (10000), CAP (minutes, 3.0),
# JOBS (8), N (1000), SEEDS (0,1,2) scale it down for a trial on a CPU.
set -u
stage=$1 out=$2
mkdir -p "$out"
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-10000} CAP=${CAP:-3.0} JOBS=${JOBS:-8}
N=${N:-1000} SEEDS=${SEEDS:-0,1,2} OFFICIAL=${OFFICIAL:-.bench/official-ncsn}
PY=${PY:-python3}
if [ -z "${NCSN_DATA_ROOT:-}" ]; then
  export NCSN_DATA_ROOT=/tmp/ncsn-data
  mkdir -p $NCSN_DATA_ROOT/MNIST/raw
  for f in "${MNIST_GZ:-.bench/mnist}"/*.gz; do
    [ -f "$NCSN_DATA_ROOT/MNIST/raw/$(basename "$f" .gz)" ] ||
      gunzip -c "$f" >"$NCSN_DATA_ROOT/MNIST/raw/$(basename "$f" .gz)"
  done
fi
case $stage in
speed)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
  timeout "${SPEED_TIMEOUT:-200}" $PY benchmarks/gpu_official_vs_ncsn.py --official "$OFFICIAL" \
    --device "$DEVICE" --repeats "${REPEATS:-10}" --warmup 3 --json "$out/gpu_official_vs_ncsn.json"
  ;;
sweep)
  $PY -m ncsn.cli train --config digits --workdir runs/gpu_digits --device "$DEVICE" \
    --no-progress >"$out/digits_train.log" 2>&1 &
  timeout "${SWEEP_TIMEOUT:-330}" $PY benchmarks/cpu_hour_sweep.py --steps "$STEPS" \
    --minutes "$CAP" --device "$DEVICE" --jobs "$JOBS" --samplers "config;ancestral" --n "$N" \
    --variants "${VARIANTS:-baseline,paper,edm,lognormal,ema0.9995,lr2e-3,cosine,unet32-122}" \
    --runs runs/gpu_sweep --out "$out/sweep.json" >"$out/sweep.log" 2>&1
  echo "sweep rc $?"
  wait
  tail -3 "$out/digits_train.log"
  cat "$out/sweep.md"
  tar czf "$out/runs.tgz" --exclude='*.safetensors' --exclude=tb runs/gpu_sweep runs/gpu_digits
  ;;
nfe)
  # the paper's ALD at 1,000 evaluations first, then every sampler at the small budgets; the
  # checkpoints in parallel, all stopped at the deadline (finished rows are in the JSON)
  deadline=$(($(date +%s) + ${NFE_TIMEOUT:-220}))
  for run in ${NFE_RUNS:-runs/gpu_sweep/baseline runs/gpu_digits}; do
    q="$out/nfe_$(basename "$run")"
    (for args in "--samplers ald --nfe ${NFE_BIG:-1000}" "--nfe ${NFE_SMALL:-10,20,35,50,100,200}"; do
      timeout $((deadline - $(date +%s))) $PY benchmarks/quality_vs_nfe.py --checkpoint "$run" \
        --device "$DEVICE" --batch "$N" --n "$N" --seeds "$SEEDS" --out "$q.json" $args || break
    done >"$q.log" 2>&1) &
  done
  wait
  tail -n 60 "$out"/nfe_*.md
  ;;
esac
