"""Which score network learns fastest per CPU-minute? Train each candidate for the same wall
clock, then compare the held-out DSM loss (same sigma schedule, same fixed noise).

Each candidate trains with the config's optimiser and data for ``--minutes`` of wall clock
(alone on the machine: run nothing else meanwhile), then its raw weights (EMA needs longer
runs to catch up) are scored on ``--n-test`` test images. Lower is better.

    python benchmarks/arch_sweep.py --config mnist-cpu --minutes 5 \
        --out docs/results/arch_sweep_mnist.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import _main
from ncsn.api import load_checkpoint, model_sigmas
from ncsn.cli.args import add_overrides
from ncsn.config import load_config
from ncsn.data import as_tensor, get_dataset
from ncsn.io import atomic_write
from ncsn.metrics.heldout import heldout_dsm_loss
from ncsn.models import count_parameters
from ncsn.training import train

CANDIDATES = [
    {"name": "unet", "options": {"ch": 16, "ch_mult": [1, 2, 8], "num_res_blocks": 1}},
    {"name": "unet", "options": {"ch": 16, "ch_mult": [1, 4, 4], "num_res_blocks": 1}},
    {"name": "unet", "options": {"ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1}},
    {"name": "ncsnv2", "options": {"ngf": 16}},
    {"name": "ncsn", "options": {"ngf": 16}},
]


def run_candidate(cfg, cand: dict, minutes: float, test: torch.Tensor, seed: int) -> dict:
    """Train one candidate for ``minutes`` and score it."""
    model_cfg = dataclasses.replace(cfg.model, name=cand["name"], options=cand["options"])
    training = dataclasses.replace(
        cfg.training, time_limit=minutes, eval_every=0, sample_every=0, ema_rate=None
    )
    c = dataclasses.replace(cfg, model=model_cfg, training=training)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        res = train(c, tmp, progress=False, log=lambda *_: None)
        wall = time.time() - start
        model, c = load_checkpoint(tmp, ema=False)
    dsm = heldout_dsm_loss(model, test, model_sigmas(c), seed=seed, batch_size=200)
    return {
        **cand,
        "params": count_parameters(model),
        "steps": res.step,
        "seconds": round(wall, 1),
        "s_per_step": round(wall / max(res.step, 1), 3),
        "heldout_dsm": round(dsm["loss"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="mnist-cpu")
    add_overrides(p, "KEY=VALUE", "config override, as for ncsn train (repeatable)")
    p.add_argument("--minutes", type=float, default=4.0, help="wall clock per candidate")
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", type=Path, help="JSON list of {name, options} to compare")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    cfg = load_config(a.config, a.overrides)
    cands = json.loads(a.candidates.read_text()) if a.candidates else CANDIDATES
    test = as_tensor(get_dataset(cfg.data.dataset, root=cfg.data.root, split="test"))[0]
    test = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: a.n_test]]
    rows = []
    for cand in cands:
        rows.append(run_candidate(cfg, cand, a.minutes, test, a.seed))
        print(json.dumps(rows[-1]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(a.out, "w") as f:
        json.dump(
            {
                "command": " ".join(["python", *sys.argv]),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "config": a.config,
                "overrides": a.overrides,
                "minutes_each": a.minutes,
                "n_test": int(len(test)),
                "rows": rows,
            },
            f,
            indent=1,
        )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    _main.run(main)
