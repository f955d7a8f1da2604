"""Time one network evaluation (a sampler step) of a full-size score network, and what
reproducing a sample-quality table with it costs on this machine.

Only the forward pass is measured (no training step), so the full-size CIFAR-10 RefineNet
fits in a few GB. Prints one JSON line: the median evaluation time (wall clock, and the
process's CPU time per evaluation, which other processes on a shared machine do not
inflate), peak memory, threads, CPU flags, the floating-point operations of one evaluation
per image (``torch.utils.flop_counter``, machine independent), and the extrapolated CPU
time for ``--n-samples`` samples at the case's network evaluations per sample (the paper's
CIFAR-10 sampler: L = 10 levels x T = 100 steps = 1,000).

    OMP_NUM_THREADS=2 python benchmarks/bench_eval.py --case ncsn-cifar10 --batch 100 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import _main
from ncsn.models import count_parameters, create_model
from ncsn.perf import tune_allocator
from ncsn.schedules import geometric_sigmas

# name: (model, channels, image size, options, sigma_max, L, network evaluations per sample)
CASES = {
    "ncsn-cifar10": ("ncsn", 3, 32, {"ngf": 128}, 1.0, 10, 10 * 100),
    "ncsn-mnist": ("ncsn", 1, 28, {"ngf": 64}, 1.0, 10, 10 * 100),
    "ncsnv2-cifar10": ("ncsnv2", 3, 32, {"ngf": 128}, 50.0, 232, 232 * 5 + 1),
}


def cpu_flags() -> list[str]:
    """The CPU's vector-extension flags that matter for PyTorch's kernels."""
    try:
        text = open("/proc/cpuinfo").read()  # noqa: SIM115
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if "flags" in ln), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    return [f for f in wanted if f in flags]


def run(case: str, batch: int, reps: int, n_samples: int) -> dict:
    name, c, size, opts, smax, levels, nfe = CASES[case]
    torch.manual_seed(0)
    sigmas = geometric_sigmas(smax, 0.01, levels)
    model = create_model(name, channels=c, image_size=size, sigmas=sigmas, **opts).eval()
    x = torch.rand(batch, c, size, size)
    sigma = sigmas[-1].expand(batch)
    times = []
    start = time.perf_counter()
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(x[:1], sigma[:1])
        model(x, sigma)  # warm-up
        cpu0 = sum(os.times()[:2])
        for _ in range(reps):
            t = time.perf_counter()
            model(x, sigma)
            times.append(time.perf_counter() - t)
        cpu_per_eval = (sum(os.times()[:2]) - cpu0) / reps
    eval_s = statistics.median(times)
    total_s = n_samples / batch * nfe * eval_s
    return {
        "case": case,
        "params": count_parameters(model),
        "batch": batch,
        "eval_s": round(eval_s, 3),
        "eval_s_all": [round(t, 3) for t in times],
        "cpu_s_per_eval": round(cpu_per_eval, 2),  # user + system, all threads
        "gflop_per_image": round(counter.get_total_flops() / 1e9, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other processes on the machine
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "nfe_per_sample": nfe,
        "n_samples": n_samples,
        "extrapolated_cpu_days": round(total_s / 86400, 1),
        "extrapolated_cpu_days_uncontended": round(
            n_samples / batch * nfe * cpu_per_eval / torch.get_num_threads() / 86400, 1
        ),
        "total_pflop": round(n_samples * nfe * counter.get_total_flops() / 1e15, 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=sorted(CASES), default="ncsn-cifar10")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n-samples", type=int, default=50_000)
    a = p.parse_args()
    tune_allocator()
    print(json.dumps(run(a.case, a.batch, a.reps, a.n_samples)))


if __name__ == "__main__":
    _main.run(main)
