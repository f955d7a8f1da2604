"""Throughput of the FID Inception network on this machine (images per second).

Feeds a few batches of real images (sklearn digits, 8x8 gray: the network's input is always
299x299 RGB, so the source size does not matter) through ncsn's extractor with the standard
weights, one intra-op thread unless ``--threads`` says otherwise. Reports wall-clock and CPU
time per image (CPU time is the honest number on a shared machine), the peak RSS, and what
that means for the evaluation of N images. Prints one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/inception_throughput.py --batches 3 --batch-size 10
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=3, help="timed batches (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from sklearn.datasets import load_digits

    from ncsn.metrics.inception import InceptionExtractor

    extractor = InceptionExtractor(device="cpu")
    digits = torch.tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]
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
        "weights": extractor.info["weights"],
    }
    print(json.dumps(out))
    assert np.isfinite(extractor(digits[:2])[0].numpy()).all()


if __name__ == "__main__":
    main()
