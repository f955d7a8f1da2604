"""Speed and memory of ncsn's training step under its execution options.

Each variant runs in its own process (so peak RSS belongs to it alone) and times the real
:func:`ncsn.train_step.train_step` (data order, draws, accumulation, autocast, clipping, Adam,
EMA) on random images of the config's shape. Prints one JSON line per variant and a table.

    python benchmarks/bench_train_options.py --config mnist --steps 3 \\
        --variants fp32,bf16,checkpointing,accumulate4
    python benchmarks/bench_train_options.py --config digits --steps 20 --device cuda \\
        --variants fp32,bf16,bf16+compile+channels_last

Variants are ``+``-joined options: ``fp32``, ``bf16``, ``checkpointing``, ``compile``,
``channels_last``, ``accumulateK``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import _main
from ncsn.api import build_model
from ncsn.config import load_config
from ncsn.data import TensorImageDataset
from ncsn.distributed import Dist
from ncsn.perf import tune_allocator
from ncsn.train_state import new_state
from ncsn.train_step import train_step
from ncsn.training import resolve_config, step_setup

# (channels, image size) of the data sets when the config leaves them to the data
SHAPES = {"digits": (1, 8), "mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}
OPTIONS = {
    "fp32": "training.precision=fp32",
    "bf16": "training.precision=bf16",
    "checkpointing": "training.activation_checkpointing=true",
    "compile": "training.compile=true",
    "channels_last": "training.channels_last=true",
}


def _overrides(variant: str) -> list[str]:
    out = []
    for part in variant.split("+"):
        if part.startswith("accumulate"):
            out.append(f"training.accumulate={int(part[len('accumulate') :])}")
        elif part in OPTIONS:
            out.append(OPTIONS[part])
        else:
            raise SystemExit(
                f"unknown variant part {part!r}; use {', '.join(OPTIONS)}, accumulateK"
            )
    return out


def measure(config: str, sets: list[str], variant: str, steps: int, device: str) -> dict:
    """Time ``steps`` training steps after one warm-up step; returns medians and peak RSS."""
    tune_allocator()
    cfg = load_config(config, [*sets, *_overrides(variant)])
    c, size = SHAPES.get(cfg.data.dataset, (3, 32))
    c, size = cfg.data.channels or c, cfg.data.image_size or size
    n = max(cfg.training.batch_size * 4, 512)
    ds = TensorImageDataset(torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8))
    cfg = resolve_config(cfg, ds)
    d = Dist(device=torch.device(device))
    torch.manual_seed(0)
    model = build_model(cfg).to(d.device)
    if cfg.training.channels_last:
        model = model.to(memory_format=torch.channels_last)
    state = new_state(cfg, model, ds, cfg.training.batch_size, 0, 1)
    micro = (cfg.training.batch_size // cfg.training.accumulate, c, size, size)
    setup = step_setup(cfg, state, d, micro, lambda m: print(m, file=sys.stderr))
    sync = torch.cuda.synchronize if d.device.type == "cuda" else (lambda: None)
    train_step(state, setup)
    times = []
    for _ in range(steps):
        sync()
        t = time.perf_counter()
        res = train_step(state, setup)
        sync()
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    return {
        "variant": variant,
        "config": config,
        "device": str(d.device),
        "batch": cfg.training.batch_size,
        "step_s": round(step_s, 4),
        "images_per_s": round(cfg.training.batch_size / step_s, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_cuda_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if d.device.type == "cuda"
        else None,
        "loss": res.loss,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="digits")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--variants", default="fp32,bf16,checkpointing,accumulate4")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.config, a.sets, a.one, a.steps, a.device)))
        return
    rows = []
    for v in a.variants.split(","):
        cmd = [sys.executable, __file__, "--config", a.config, "--steps", str(a.steps)]
        cmd += ["--device", a.device, "--one", v, *(f"--set={s}" for s in a.sets)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n{'variant':<32} {'s/step':>8} {'img/s':>8} {'RSS GB':>7} {'speed':>6} {'memory':>6}")
    for r in rows:
        speed = base["step_s"] / r["step_s"]
        mem = r["peak_rss_gb"] / base["peak_rss_gb"]
        print(
            f"{r['variant']:<32} {r['step_s']:>8.3f} {r['images_per_s']:>8.1f} "
            f"{r['peak_rss_gb']:>7.2f} {speed:>5.2f}x {mem:>5.2f}x"
        )


if __name__ == "__main__":
    _main.run(main)
