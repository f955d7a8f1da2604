"""Sampler comparison on one checkpoint: quality vs network evaluations and seconds.

For each sampler setting, draws ``--n`` samples (same seeds), times them, and scores them
with the domain metrics of the shipped classifier (dFID against the test split, class
histogram, confidence). Writes a JSON table and a plot (dFID vs network evaluations).

    python benchmarks/compare_samplers.py --checkpoint runs/mnist-cpu --n 1000 \
        --out docs/results/samplers_mnist.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from ncsn.api import load_checkpoint, sample
from ncsn.io import atomic_write
from ncsn.metrics import evaluate


def settings(cfg) -> list[dict]:
    """The sampler settings compared: the config's own, with/without denoising, fewer steps."""
    L, T = cfg.model.num_levels, cfg.sampling.n_steps_each
    out = [
        {"label": f"ALD {L}x{T}, denoise", "sampler": "ald", "n_steps_each": T, "denoise": True},
        {
            "label": f"ALD {L}x{T}, no denoise",
            "sampler": "ald",
            "n_steps_each": T,
            "denoise": False,
        },
    ]
    for t in sorted({max(1, T // 2), 1} - {T}, reverse=True):
        out.append(
            {"label": f"ALD {L}x{t}, denoise", "sampler": "ald", "n_steps_each": t, "denoise": True}
        )
    out += [
        {"label": f"CAS {L}x1, denoise", "sampler": "cas", "denoise": True},
        {"label": f"ancestral {L}x1, denoise", "sampler": "ancestral", "denoise": True},
    ]
    return out


def nfe(cfg, s: dict) -> int:
    """Network evaluations per sample."""
    steps = cfg.model.num_levels * (s.get("n_steps_each", 1) if s["sampler"] == "ald" else 1)
    if s["sampler"] == "ancestral":
        steps -= 1
    return steps + int(s["denoise"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    model, cfg = load_checkpoint(a.checkpoint)
    rows = []
    for s in settings(cfg):
        samp = dataclasses.replace(cfg.sampling, **{k: v for k, v in s.items() if k != "label"})
        c = dataclasses.replace(cfg, sampling=samp)
        start = time.perf_counter()
        x = sample(model, c, a.n, seed=a.seed)
        seconds = time.perf_counter() - start
        rep = evaluate(
            x,
            metrics=["dfid", "classes"],
            dataset=cfg.data.dataset,
            data_root=a.data_root or cfg.data.root,
            ref_split="test",
            progress=False,
        )
        row = {
            "label": s["label"],
            "nfe": nfe(cfg, s),
            "seconds": round(seconds, 1),
            "dfid": round(rep["dfid"], 3),
            "confidence": round(rep["classes"]["confidence"], 4),
            "min_class_fraction": min(rep["classes"]["fractions"]),
            "class_counts": rep["classes"]["counts"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(a.out, "w") as f:
        json.dump(
            {
                "checkpoint": str(a.checkpoint),
                "n": a.n,
                "seed": a.seed,
                "threads": torch.get_num_threads(),
                "rows": rows,
            },
            f,
            indent=1,
        )
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for r in rows:
        ax.scatter(r["nfe"], r["dfid"])
        ax.annotate(r["label"], (r["nfe"], r["dfid"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per sample")
    ax.set_ylabel("domain FID (lower is better)")
    fig.tight_layout()
    with atomic_write(a.out.with_suffix(".png"), "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
