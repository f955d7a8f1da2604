"""What the sampler benchmarks share: one setting applied to a config, sample quality of a
set of samples, and the machine's description."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any

import torch

from ncsn.api import sample, sampler_settings, with_nfe, with_sampler
from ncsn.metrics import evaluate

BATCH = 100  # images per network batch: the cost model of every estimate


def with_setting(cfg, sampler: str, nfe: int | None = None, batch: int = BATCH, **options: Any):
    """The config sampling with ``sampler`` and ``options`` (``levels`` included) in batches
    of ``batch``, its steps set for ``nfe`` evaluations per sample when given
    (``ncsn.api.with_nfe``)."""
    cfg = with_sampler(cfg, sampler)  # another sampler than the config's: the network's L levels
    s = dataclasses.replace(cfg.sampling, batch_size=batch, **options)
    cfg = dataclasses.replace(cfg, sampling=s)
    return with_nfe(cfg, nfe) if nfe else cfg


def run_and_score(
    model, cfg, n: int, seed: int, metrics: list[str], data_root=None, inception_weights=None
) -> dict:
    """Draw ``n`` samples with seed ``seed``, time them, score them against the test split."""
    seconds = []

    def draw():  # called by evaluate once the test split and the classifier are open
        start = time.perf_counter()
        x = sample(model, cfg, n, seed=seed)
        seconds.append(time.perf_counter() - start)
        return x

    rep = evaluate(
        draw,
        metrics=[*metrics, "classes"] if "classes" not in metrics else metrics,
        dataset=cfg.data.dataset,
        data_root=data_root or cfg.data.root,
        ref_split="test",
        inception_weights=inception_weights,
        progress=False,
    )
    out = {**sampler_settings(cfg), "seed": seed, "seconds": round(seconds[0], 1)}
    for m in metrics:
        if m in ("dfid", "fid"):
            out[m] = round(float(rep[m]), 3)
    out["confidence"] = round(rep["classes"]["confidence"], 4)
    out["min_class_fraction"] = min(rep["classes"]["fractions"])
    out["class_counts"] = rep["classes"]["counts"]
    return out


def machine() -> dict:
    """CPU model and flags that matter for speed, and the thread count."""
    flags, model = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = " ".join(x for x in ("avx2", "avx512f", "avx512_bf16") if x in have)
                    break
    except OSError:
        pass
    out = {
        "cpu": model or platform.machine(),
        "flags": flags,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["torch"] = torch.__version__
    return out
