"""Sample quality against network evaluations: every registered sampler at a list of budgets.

For each sampler and each budget N_eval, ``ncsn.api.with_nfe`` sets the sampler's steps (the
registry's knob: levels, or T for ALD) to the largest value within the budget; ``--n``
samples per seed are drawn and scored with the domain metrics (dFID against the test split,
classes; ``--metrics dfid,fid`` adds Inception FID). Each finished (sampler, budget, seed)
is written to the JSON at once, and a rerun with the same ``--out`` skips what is there, so
a long sweep can be stopped and resumed. Writes ``OUT.json``, ``OUT.md`` (table: mean and
spread over seeds) and ``OUT.png`` (quality against evaluations, log axes).

    # the full sweep (section 4 of issue 11); --estimate prints its cost first
    python benchmarks/quality_vs_nfe.py --checkpoint runs/mnist-cpu --estimate
    python benchmarks/quality_vs_nfe.py --checkpoint runs/mnist-cpu \\
        --out docs/results/mnist/quality_vs_nfe.json
    # a small run
    python benchmarks/quality_vs_nfe.py --checkpoint runs/digits --n 200 --seeds 0 \\
        --nfe 10,35,100 --samplers heun,dpmpp-2m,ald --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import _main
from _samplers import BATCH, machine, run_and_score, with_setting
from ncsn.api import sampler_settings
from ncsn.cli.args import add_overrides
from ncsn.errors import ConfigError
from ncsn.io import atomic_write
from ncsn.sampling import SAMPLERS

NFE = "10,20,35,50,100,200,1000"


def plan(cfg, samplers: list[str], budgets: list[int], batch: int = BATCH) -> list[dict]:
    """Every (sampler, budget) with the settings it gets; unreachable budgets say why."""
    out = []
    for name in samplers:
        seen = set()
        for budget in budgets:
            try:
                c = with_setting(cfg, name, budget, batch)
            except ConfigError as e:
                out.append({"sampler": name, "budget": budget, "skip": str(e)})
                continue
            run = sampler_settings(c)
            dup = run["nfe"] in seen  # e.g. a network with L levels caps the steps
            seen.add(run["nfe"])
            out.append({"sampler": name, "budget": budget, "cfg": c, "nfe": run["nfe"], "dup": dup})
    return out


def estimate(jobs: list[dict], n: int, seeds: int, sec_per_eval: float) -> float:
    """Seconds of network evaluation: NFE x batches x seconds per batch-of-100 evaluation."""
    evals = sum(j["nfe"] for j in jobs if "nfe" in j and not j["dup"])
    return evals * math.ceil(n / BATCH) * seeds * sec_per_eval


def summarise(rows: list[dict], metrics: list[str]) -> list[dict]:
    """Mean and standard deviation over seeds per (sampler, nfe); the median of the seconds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["sampler"], r["nfe"]), []).append(r)
    out = []
    for (name, nfe), rs in sorted(
        groups.items(), key=lambda kv: (list(SAMPLERS).index(kv[0][0]), kv[0][1])
    ):
        s = {"sampler": name, "nfe": nfe, "levels": rs[0]["levels"], "seeds": len(rs)}
        for m in [*metrics, "min_class_fraction"]:
            vals = [r[m] for r in rs]
            s[m] = statistics.fmean(vals)
            s[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        s["seconds"] = statistics.median(r["seconds"] for r in rs)  # robust to a busy machine
        out.append(s)
    return out


def table(summary: list[dict], metrics: list[str]) -> str:
    """Markdown: one row per (sampler, nfe), mean ± std over seeds (the value alone for one)."""
    head = " | ".join(metrics)
    rows = [f"| sampler | NFE | levels | seeds | {head} | seconds (median) | smallest class % |"]
    rows.append("|---" * (6 + len(metrics)) + "|")
    for s in summary:
        vals = " | ".join(
            f"{s[m]:.2f}" + (f" ± {s[m + '_std']:.2f}" if s["seeds"] > 1 else "") for m in metrics
        )
        rows.append(
            f"| {s['sampler']} | {s['nfe']} | {s['levels']} | {s['seeds']} | {vals} "
            f"| {s['seconds']:.0f} | {100 * s['min_class_fraction']:.1f} |"
        )
    return "\n".join(rows)


def plot(summary: list[dict], metric: str, path: Path) -> None:
    """``metric`` (mean ± std over seeds) against evaluations per sample, log axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for k, name in enumerate(SAMPLERS):
        pts = [s for s in summary if s["sampler"] == name]
        if pts:
            ax.errorbar(
                [s["nfe"] for s in pts],
                [s[metric] for s in pts],
                yerr=[s[f"{metric}_std"] for s in pts],
                marker="osv^<>Dp"[k % 8],
                capsize=3,
                label=name,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per sample (log)")
    ax.set_ylabel(f"{metric} vs test split (log, lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def write(out: Path, head: dict, rows: list[dict], metrics: list[str]) -> None:
    """The JSON (every run, and the summary), the markdown table and the plot."""
    summary = summarise(rows, metrics)
    out.parent.mkdir(parents=True, exist_ok=True)  # only once there is a row to keep
    with atomic_write(out, "w") as f:
        json.dump({**head, "rows": rows, "summary": summary}, f, indent=1)
    with atomic_write(out.with_suffix(".md"), "w") as f:
        f.write(table(summary, metrics) + "\n")
    if summary:
        plot(summary, metrics[0], out.with_suffix(".png"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="run folder or checkpoint file")
    p.add_argument("--config", help="with --estimate and no checkpoint: a config's plan")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="registered names")
    p.add_argument("--nfe", default=NFE, help=f"budgets (default {NFE})")
    p.add_argument("--n", type=int, default=1000, help="samples per seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--metrics", default="dfid", help="dfid and/or fid")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", type=Path, default=Path("quality_vs_nfe.json"))
    p.add_argument("--device", default="cpu", help="where the network runs (cpu, cuda, ...)")
    p.add_argument("--batch", type=int, default=BATCH, help="images per network batch")
    add_overrides(p, "KEY=VALUE", "config override for every run, e.g. sampling.s_churn=40")
    p.add_argument("--estimate", action="store_true", help="print the plan and its cost, stop")
    p.add_argument(
        "--sec-per-eval",
        type=float,
        default=0.09,
        help="one evaluation at batch 100 (s); 0.08-0.10 for mnist-cpu's network on 2 AVX-512 "
        "cores (the 2026-11-28 sweep), about twice that with AVX2 only",
    )
    p.add_argument("--plot-only", action="store_true", help="redraw from an existing --out")
    a = p.parse_args()
    metrics = a.metrics.split(",")
    if a.plot_only:
        rep = json.loads(a.out.read_text())
        write(
            a.out,
            {k: v for k, v in rep.items() if k not in ("rows", "summary")},
            rep["rows"],
            metrics,
        )
        return
    from ncsn.api import load_checkpoint
    from ncsn.config import apply_overrides, load_config

    if a.checkpoint:
        model, cfg = load_checkpoint(a.checkpoint, device=a.device)
    elif a.config and a.estimate:
        model, cfg = None, load_config(a.config)
    else:
        p.error("--checkpoint is required (or --config with --estimate)")
    cfg = apply_overrides(cfg, a.overrides)
    seeds = [int(s) for s in a.seeds.split(",")]
    jobs = plan(cfg, a.samplers.split(","), [int(b) for b in a.nfe.split(",")], a.batch)
    for j in jobs:
        what = j.get("skip") or f"NFE {j['nfe']}" + (
            " (same as a smaller budget)" if j["dup"] else ""
        )
        print(f"{j['sampler']:>10} @ {j['budget']:>5}: {what}", file=sys.stderr)
    cost = estimate(jobs, a.n, len(seeds), a.sec_per_eval)
    print(
        f"network time: {cost / 3600:.2f} h at {a.sec_per_eval} s per batch-of-{BATCH} "
        f"evaluation ({len(seeds)} seeds x {a.n} samples), plus scoring",
        file=sys.stderr,
    )
    if a.estimate:
        return
    old = json.loads(a.out.read_text()) if a.out.is_file() else {}
    rows = old.get("rows", [])
    done = {(r["sampler"], r["nfe"], r["seed"]) for r in rows}
    commands = old.get("commands", [old["command"]] if "command" in old else [])
    head = {
        "commands": [*commands, " ".join(["python", *sys.argv])],  # every run that added rows
        "machine": machine(),
        "device": a.device,
        "checkpoint": str(a.checkpoint),
        "dataset": cfg.data.dataset,
        "n": a.n,
        "overrides": a.overrides,
        "seeds": seeds,
        "reference": "test split",
        "skipped": [
            {"sampler": j["sampler"], "budget": j["budget"], "why": j["skip"]}
            for j in jobs
            if "skip" in j
        ],
    }
    t0 = time.time()
    for j in jobs:
        for seed in seeds:
            if "skip" in j or j["dup"] or (j["sampler"], j["nfe"], seed) in done:
                continue
            row = run_and_score(
                model, j["cfg"], a.n, seed, metrics, a.data_root, a.inception_weights
            )
            rows.append({**row, "budget": j["budget"]})
            print(
                json.dumps({k: row[k] for k in ("sampler", "nfe", "seed", "seconds", *metrics)}),
                flush=True,
            )
            write(a.out, {**head, "seconds_total": round(time.time() - t0, 1)}, rows, metrics)
    write(a.out, {**head, "seconds_total": round(time.time() - t0, 1)}, rows, metrics)
    print(table(summarise(rows, metrics), metrics))


if __name__ == "__main__":
    _main.run(main)
