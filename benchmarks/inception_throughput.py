"""Throughput of the FID Inception network on this machine (images per second).

Feeds a few batches of real images (sklearn digits, 8x8 gray: the network's input is always
299x299 RGB, so the source size does not matter) through ncsn's extractor with the standard
weights, one intra-op thread unless ``--threads`` says otherwise. Reports wall-clock and CPU
time per image (CPU time is the honest number on a shared machine), the peak RSS, and what
that means for the evaluation of N images. Prints one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/inception_throughput.py --batches 3 --batch-size 10
    OMP_NUM_THREADS=1 python benchmarks/inception_throughput.py --compare   # folded vs plain

``--compare`` alternates the extractor's inference copy (batch norms folded, channels-last:
what ``ncsn eval`` runs) with the plain network (``--plain`` times that alone) and prints the
median time of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch

import _main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=3, help="timed batches (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plain", action="store_true", help="time the unfolded NCHW network")
    ap.add_argument("--compare", action="store_true", help="alternate folded and plain")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from sklearn.datasets import load_digits

    from ncsn.metrics.inception import InceptionExtractor

    extractor = InceptionExtractor(device="cpu")
    weights = extractor.info["weights"]
    digits = torch.tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]
    if a.compare:
        return compare(extractor, digits, a)
    if a.plain:
        extractor = plain_path(extractor)
    extractor(digits[:2])  # warm-up
    wall, cpu = [], []
    for i in range(a.batches):
        batch = digits[i * a.batch_size : (i + 1) * a.batch_size]
        t0, c0 = time.perf_counter(), time.process_time()
        extractor(batch)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    n = a.batches * a.batch_size
    per_image_cpu = sum(cpu) / n
    out = {
        "threads": a.threads,
        "images": n,
        "batch_size": a.batch_size,
        "img_per_s_wall": round(n / sum(wall), 2),
        "img_per_s_cpu": round(n / sum(cpu), 2),
        "cpu_s_per_image": round(per_image_cpu, 4),
        "hours_per_10k_images_cpu": round(10_000 * per_image_cpu / 3600, 2),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batch_wall_s": [round(t, 3) for t in wall],
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "weights": weights,
        "path": "plain" if a.plain else "folded, channels-last",
    }
    print(json.dumps(out))
    assert np.isfinite(extractor(digits[:2])[0].numpy()).all()


def plain_path(extractor):
    """The extractor's own network as loaded (NCHW, batch norms unfolded), same input."""
    from ncsn.metrics.inception_net import fid_preprocess

    plain = extractor.net
    return torch.no_grad()(lambda images: plain(fid_preprocess(images)))


def compare(extractor, digits: torch.Tensor, a) -> None:
    """Alternate the folded channels-last copy and the plain network; medians and ratio."""
    paths = {"folded": extractor, "plain": plain_path(extractor)}
    batch = digits[: a.batch_size]
    times: dict[str, list[float]] = {name: [] for name in paths}
    for run in paths.values():
        run(batch[:2])  # warm-up
    for _ in range(a.batches):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run(batch)
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) / a.batch_size for name, t in times.items()}
    print(
        json.dumps(
            {
                "threads": a.threads,
                "batch_size": a.batch_size,
                "rounds": a.batches,
                "s_per_image": {k: round(v, 4) for k, v in med.items()},
                "speedup_folded": round(med["plain"] / med["folded"], 3),
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    _main.run(main)
