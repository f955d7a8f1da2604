"""Sampler comparison on one checkpoint: quality vs network evaluations and seconds.

For each sampler setting, draws ``--n`` samples (same seeds), times them, and scores them
with the domain metrics of the shipped classifier (dFID against the test split, class
histogram, confidence). Writes a JSON table and a plot (dFID vs network evaluations).

    python benchmarks/compare_samplers.py --checkpoint runs/mnist-cpu --n 1000 \
        --out docs/results/mnist/samplers.json
    python benchmarks/compare_samplers.py --checkpoint runs/mnist-cpu --plot-only \
        --out docs/results/mnist/samplers.json    # redraw the plot from the JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import _main
from _samplers import machine, run_and_score, with_setting
from ncsn.api import load_checkpoint
from ncsn.checkpoint import find_checkpoint
from ncsn.io import atomic_write
from ncsn.models import has_discrete_sigmas
from ncsn.sampling import SAMPLERS


def settings(cfg) -> list[dict]:
    """The sampler settings compared.

    The paper's 10x100 schedule (10 geometric levels over the model's sigma range, T=100,
    eps=4e-5, i.e. the official step_lr=2e-5) with and without denoising, and at T=10, when
    the model accepts any sigma; the config's own L x T, with/without denoising and at fewer
    steps; then every other registered sampler at its defaults on the model's L levels.
    """
    L = cfg.model.num_levels
    T = cfg.sampling.n_steps_each or SAMPLERS["ald"].options["n_steps_each"].default
    out = []
    if not has_discrete_sigmas(cfg.model.name) and (L, T) != (10, 100):
        paper = {"sampler": "ald", "levels": 10, "eps": 4e-5}
        out += [
            {"label": "ALD 10x100 (paper), denoise", **paper, "n_steps_each": 100, "denoise": True},
            {"label": "ALD 10x100 (paper), no denoise", **paper, "n_steps_each": 100},
            {"label": "ALD 10x10, denoise", **paper, "n_steps_each": 10, "denoise": True},
        ]
    out += [
        {"label": f"ALD {L}x{T}, denoise", "sampler": "ald", "n_steps_each": T, "denoise": True},
        {"label": f"ALD {L}x{T}, no denoise", "sampler": "ald", "n_steps_each": T},
    ]
    for t in sorted({max(1, T // 2), 1} - {T}, reverse=True):
        out.append(
            {"label": f"ALD {L}x{t}, denoise", "sampler": "ald", "n_steps_each": t, "denoise": True}
        )
    for s in out:
        s.setdefault("denoise", False)
    for name in SAMPLERS:
        if name != "ald":
            out.append({"label": f"{name} {L} levels", "sampler": name})
    return out


def plot(rows: list[dict], path: Path) -> None:
    """dFID (log scale) against network evaluations per sample, one marker per setting."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    markers = dict(zip(SAMPLERS, "osv^<>Dp", strict=False))
    colours: dict[str, str] = {}  # one colour per setting, hollow marker without denoising
    for r in rows:
        setting = r["label"].split(",")[0]
        colour = colours.setdefault(setting, f"C{len(colours)}")
        hollow = "no denoise" in r["label"]
        ax.scatter(
            r["nfe"],
            r["dfid"],
            marker=markers.get(setting.split()[0].lower(), "*"),
            facecolors="none" if hollow else colour,
            edgecolors=colour,
            label=f"{r['label']}: {r['dfid']:.1f}",
            s=40,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per sample (log)")
    ax.set_ylabel("domain FID vs test split (log, lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--plot-only", action="store_true", help="redraw the plot from an existing --out JSON"
    )
    a = p.parse_args()
    if a.plot_only:
        plot(json.loads(a.out.read_text())["rows"], a.out.with_suffix(".png"))
        return
    t0 = time.time()
    model, cfg = load_checkpoint(a.checkpoint)
    ckpt_file = find_checkpoint(a.checkpoint)
    rows = []
    for s in settings(cfg):
        options = {k: v for k, v in s.items() if k not in ("label", "sampler")}
        c = with_setting(cfg, s["sampler"], **options)
        run = run_and_score(model, c, a.n, a.seed, ["dfid"], a.data_root)
        row = {
            "label": s["label"],
            "levels": run["levels"],
            "steps_each": run.get("n_steps_each", 1),
            "eps": run.get("eps"),
            **{k: run[k] for k in ("nfe", "seconds", "dfid", "confidence")},
            **{k: run[k] for k in ("min_class_fraction", "class_counts")},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(a.out, "w") as f:
        json.dump(
            {
                "command": " ".join(["python", *sys.argv]),
                "machine": machine(),
                "checkpoint": str(a.checkpoint),
                "checkpoint_file": ckpt_file.name,
                "reference": "test split, shipped domain classifier features",
                "n": a.n,
                "seed": a.seed,
                "threads": torch.get_num_threads(),
                "seconds_total": round(time.time() - t0, 1),
                "rows": rows,
            },
            f,
            indent=1,
        )
    plot(rows, a.out.with_suffix(".png"))
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}")


if __name__ == "__main__":
    _main.run(main)
