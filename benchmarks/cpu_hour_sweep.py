"""Quality per CPU-hour: train variants of a config for a fixed time, score each the same way.

Each variant is a list of ``--set`` overrides on ``--config`` (default ``mnist-cpu``), trained
in a fresh ``ncsn train`` process with ``training.time_limit = --minutes``, then evaluated with
``ncsn eval --metrics dfid,classes --ref-split test --n N`` for every ``--samplers`` setting.
One variant at a time (they compete for the same cores); a finished variant (its report
exists) is skipped on a rerun. Writes ``OUT.json`` and ``OUT.md`` with the machine's CPU flags
and a matmul figure measured before the first run (compare rows only within one machine).

    python benchmarks/cpu_hour_sweep.py --minutes 60 --out docs/results/mnist/cpu_hour.json
    python benchmarks/cpu_hour_sweep.py --minutes 10 --variants baseline,edm \\
        --samplers "config;heun:35" --n 500 --out /tmp/sweep.json      # a short ranking
    python benchmarks/cpu_hour_sweep.py --variant "lr2e-3=training.lr=2e-3" ...  # your own
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from _samplers import machine
from ncsn.io import atomic_write

# the levers of issue 11, section 5, one at a time (the architecture sweep's winner goes in
# as --variant NAME=model.options=...)
VARIANTS = {
    "baseline": [],
    "edm": ["model.precond=edm", "training.weighting=edm"],
    "lognormal": ["training.sigma_dist=lognormal"],
    "edm+lognormal": [
        "model.precond=edm",
        "training.weighting=edm",
        "training.sigma_dist=lognormal",
    ],
    "ema0.9995": ["training.ema_rate=0.9995"],
    "lr2e-3": ["training.lr=2e-3"],
}


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    """Single-precision matmul throughput with the current thread count (GFLOP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def sampler_args(spec: str) -> list[str]:
    """``config`` (the run's own sampler) or ``NAME:NFE`` as ``ncsn eval`` arguments."""
    if spec == "config":
        return []
    name, _, nfe = spec.partition(":")
    return ["--sampler", name, *(["--nfe", nfe] if nfe else [])]


def run_variant(name: str, sets: list[str], a, root: Path) -> dict:
    """Train one variant (unless done) and evaluate it with every sampler setting."""
    work = root / name
    ncsn = [sys.executable, "-m", "ncsn.cli"]
    train = [*ncsn, "train", "--config", a.config, "--workdir", str(work), "--no-progress"]
    train += ["--set", f"training.time_limit={a.minutes}", *[x for s in sets for x in ("--set", s)]]
    row: dict = {"variant": name, "overrides": sets, "train_command": " ".join(train[2:])}
    if not (work / "checkpoints").is_dir():
        start = time.time()
        subprocess.run(train, check=True)
        row["train_wall_s"] = round(time.time() - start, 1)
    row["evals"] = []
    for spec in a.samplers.split(";"):
        report = work / f"eval_{spec.replace(':', '_')}.json"
        cmd = [*ncsn, "eval", "--checkpoint", str(work), "--metrics", "dfid,classes"]
        cmd += ["--ref-split", "test", "--n", str(a.n), "--out", str(report), *sampler_args(spec)]
        if not report.is_file():
            subprocess.run(cmd, check=True)
        rep = json.loads(report.read_text())
        made = rep["protocol"]["samples"]
        fr = rep["classes"]["fractions"]
        row["evals"].append(
            {
                "sampler": spec,
                "command": " ".join(cmd[2:]),
                "nfe": made["nfe"],
                "dfid": rep["dfid"],
                "class_range_pct": [round(100 * min(fr), 1), round(100 * max(fr), 1)],
            }
        )
    return row


def table(rows: list[dict]) -> str:
    """Markdown, one line per (variant, sampler)."""
    out = [
        "| variant | overrides | sampler | NFE | dFID | classes % |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for e in r["evals"]:
            lo, hi = e["class_range_pct"]
            sets = ", ".join(f"`{s}`" for s in r["overrides"]) or "–"
            out.append(
                f"| {r['variant']} | {sets} | {e['sampler']} | {e['nfe']} | {e['dfid']:.2f} "
                f"| {lo}–{hi} |"
            )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="mnist-cpu")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--variants", default=",".join(VARIANTS), help="names from VARIANTS")
    p.add_argument("--variant", action="append", default=[], help="NAME=set1;set2 (repeatable)")
    p.add_argument(
        "--samplers", default="config;heun:35", help="'config' or NAME:NFE, ';'-separated"
    )
    p.add_argument("--n", type=int, default=1000, help="samples per evaluation")
    p.add_argument("--runs", type=Path, default=Path("runs/cpu_hour"), help="run folders")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    plan = {k: VARIANTS[k] for k in a.variants.split(",") if k}
    for item in a.variant:
        name, _, sets = item.partition("=")
        plan[name] = [s for s in sets.split(";") if s]
    head = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {**machine(), "matmul_gflops_1024": round(matmul_gflops(), 1)},
        "config": a.config,
        "minutes": a.minutes,
        "n": a.n,
    }
    print(json.dumps(head["machine"]), file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, sets in plan.items():
        rows.append(run_variant(name, sets, a, a.runs))
        with atomic_write(a.out, "w") as f:
            json.dump({**head, "rows": rows}, f, indent=1)
        with atomic_write(a.out.with_suffix(".md"), "w") as f:
            f.write(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
