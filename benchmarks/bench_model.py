"""Time one score network on this machine: a training step and a sampling evaluation.

Runs in its own process so that peak memory (max RSS) and user/system CPU time belong to this
model alone. Prints one JSON line. Used by ``benchmarks/run_all.py``.

    python benchmarks/bench_model.py --case ncsn-mnist --train-steps 3 --eval-reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch

import _main
from ncsn.losses import anneal_dsm_loss
from ncsn.models import count_parameters, create_model
from ncsn.perf import tune_allocator
from ncsn.schedules import geometric_sigmas

# name: (model, channels, image size, options, sigma_max, L) -- the paper's shapes and ours
CASES = {
    "ncsn-mnist": ("ncsn", 1, 28, {"ngf": 64}, 1.0, 10),
    "ncsn-cifar10": ("ncsn", 3, 32, {"ngf": 128}, 1.0, 10),
    "ncsnv2-cifar10": ("ncsnv2", 3, 32, {"ngf": 128}, 50.0, 232),
    "ncsnv2-celeba64": ("ncsnv2", 3, 64, {"ngf": 128}, 90.0, 500),
    "unet-digits": ("unet", 1, 8, {}, 5.0, 20),
    "unet-mnist-cpu": (
        "unet",
        1,
        28,
        {"ch": 16, "ch_mult": [1, 2, 8], "num_res_blocks": 1},
        16.0,
        95,
    ),
}


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


def run(case: str, train_steps: int, eval_reps: int, batch: int, eval_batch: int) -> dict:
    """Measure one case; returns medians (seconds) and resource use."""
    name, c, size, opts, smax, levels = CASES[case]
    torch.manual_seed(0)
    sigmas = geometric_sigmas(smax, 0.01, levels)
    model = create_model(name, channels=c, image_size=size, sigmas=sigmas, **opts)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, c, size, size)
    g = torch.Generator().manual_seed(0)

    def step():
        out = anneal_dsm_loss(model, x, sigmas, generator=g)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    step()  # warm-up: first-call allocations and kernel selection
    u0, s0 = _cpu()
    times = []
    for _ in range(train_steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    u1, s1 = _cpu()
    xe = torch.rand(eval_batch, c, size, size)
    se = sigmas[-1].expand(eval_batch)
    with torch.no_grad():
        model.eval()
        model(xe, se)
        evals = []
        for _ in range(eval_reps):
            t = time.perf_counter()
            model(xe, se)
            evals.append(time.perf_counter() - t)
    u2, s2 = _cpu()
    train_s = statistics.median(times)
    eval_s = statistics.median(evals)
    return {
        "case": case,
        "model": name,
        "shape": [c, size, size],
        "params": count_parameters(model),
        "batch": batch,
        "train_step_s": round(train_s, 4),
        "train_images_per_s": round(batch / train_s, 1),
        "train_user_s": round(u1 - u0, 2),
        "train_sys_s": round(s1 - s0, 2),
        "eval_batch": eval_batch,
        "eval_s": round(eval_s, 4),
        "eval_images_per_s": round(eval_batch / eval_s, 1),
        "eval_user_s": round(u2 - u1, 2),
        "eval_sys_s": round(s2 - s1, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "allocator_tuned": tune_allocator()
        if not os.environ.get("NCSN_NO_MALLOC_TUNING")
        else False,
        "train_steps": train_steps,
        "eval_reps": eval_reps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=sorted(CASES), required=True)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--eval-reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=100)
    a = p.parse_args()
    if not os.environ.get("NCSN_NO_MALLOC_TUNING"):
        tune_allocator()  # what ncsn train / sample do by default
    print(json.dumps(run(a.case, a.train_steps, a.eval_reps, a.batch, a.eval_batch)))


if __name__ == "__main__":
    _main.run(main)
