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
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

import _main
from _samplers import machine
from ncsn.checkpoint import find_checkpoint, step_of
from ncsn.errors import ConfigError
from ncsn.io import atomic_write

# the levers of issue 11, section 5, one at a time. mnist-cpu itself ("baseline") has used EDM
# preconditioning and weighting with log-normal sigma since 2026-11-27 and EMA 0.9995 since
# 2026-11-28; "paper" is its recipe before (the paper's objective: uniform levels, lambda =
# sigma^2, no preconditioning, EMA 0.999), "edm" / "lognormal" are each half of the first change
# on top of "paper", and "ema0.999" is the baseline with the earlier EMA (the recipe of
# 2026-11-27). The architecture sweep's winner goes in as --variant NAME=model.options=...
EMA_BEFORE = "training.ema_rate=0.999"
PAPER = ["model.precond=none", "training.weighting=power", "training.sigma_dist=uniform"]
VARIANTS = {
    "baseline": [],
    "paper": [*PAPER, EMA_BEFORE],
    "edm": ["training.sigma_dist=uniform", EMA_BEFORE],
    "lognormal": ["model.precond=none", "training.weighting=power", EMA_BEFORE],
    "ema0.999": [EMA_BEFORE],
    "lr2e-3": ["training.lr=2e-3"],  # measured 2026-11-28: loses (docs/results.md, row 5)
    # more training at large sigma; measured 2026-11-28: no better (docs/results.md, row 7)
    "pmean0": ["training.p_mean=0"],
    # cosine decay to 0 at the step the hour ends (10,000 steps of mnist-cpu on 2 AVX-512 cores),
    # measured on the recipe of 2026-11-27
    "cosine": ["training.lr_schedule=cosine", "training.n_iters=10000", EMA_BEFORE],
    # the architecture sweep's winner; 1.35x the CPU time per step of mnist-cpu's U-Net, so it
    # gets 10,000 / 1.35 = 7,400 steps when variants are compared at fixed --steps 10000;
    # measured 2026-11-28: loses (docs/results.md, row 6)
    "unet32-122": [
        "model.options={ch: 32, ch_mult: [1, 2, 2], num_res_blocks: 1}",
        "training.n_iters=7400",
    ],
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


TRAINED = "sweep_trained.json"  # written into a variant's folder once its training succeeded


def train_command(name: str, sets: list[str], a, root: Path) -> list[str]:
    """``ncsn train`` for one variant: ``--minutes`` of training, or exactly ``--steps`` steps
    (the way to rank variants of one architecture on another machine: a step is the same
    computation everywhere, so N steps stand for the minutes they take on this CPU)."""
    train = [sys.executable, "-m", "ncsn.cli", "train", "--config", a.config, "--no-progress"]
    train += ["--workdir", str(root / name), "--device", a.device]
    if a.steps:  # --minutes, when given too, is a safety cap
        train += ["--max-steps", str(a.steps)]
    train += ["--set", f"training.time_limit={a.minutes or 'null'}"]
    return train + [x for s in sets for x in ("--set", s)]


def eval_command(work: Path, spec: str, a) -> tuple[Path, list[str]]:
    """``ncsn eval`` of one sampler setting on a trained variant, and its report's path."""
    report = work / f"eval_{spec.replace(':', '_')}.json"
    cmd = [sys.executable, "-m", "ncsn.cli", "eval", "--checkpoint", str(work)]
    cmd += ["--metrics", "dfid,classes", "--ref-split", "test", "--n", str(a.n)]
    cmd += ["--device", a.device, "--out", str(report), *sampler_args(spec)]
    return report, cmd


def run_all(commands: list[list[str]], jobs: int) -> list[float]:
    """Run the commands, ``jobs`` at a time (1 on a CPU: they compete for the same cores);
    each one's wall-clock seconds. A failure stops the sweep."""
    walls: list[float] = []
    for i in range(0, len(commands), jobs):
        start = time.time()
        procs = [subprocess.Popen(c) for c in commands[i : i + jobs]]
        for c, proc in zip(commands[i : i + jobs], procs, strict=True):
            if proc.wait() != 0:
                raise SystemExit(f"failed ({proc.returncode}): {' '.join(c[2:])}")
            walls.append(round(time.time() - start, 1))
    return walls


def run_sweep(plan: dict[str, list[str]], a) -> list[dict]:
    """Train every variant not trained yet, then evaluate each with every sampler setting."""
    rows = []
    todo = []
    for name, sets in plan.items():
        cmd = train_command(name, sets, a, a.runs)
        rows.append({"variant": name, "overrides": sets, "train_command": " ".join(cmd[2:])})
        if not (a.runs / name / TRAINED).is_file():  # a crashed run's folder is not "done"
            todo.append((rows[-1], cmd))
    for (row, _), wall in zip(todo, run_all([c for _, c in todo], a.jobs), strict=True):
        row["train_wall_s"] = wall
        (a.runs / row["variant"] / TRAINED).write_text(json.dumps({"train_wall_s": wall}))
    evals = []
    for row in rows:
        row["evals"] = []
        work = a.runs / row["variant"]
        row["steps"] = step_of(find_checkpoint(work))
        for spec in a.samplers.split(";"):
            report, cmd = eval_command(work, spec, a)
            evals.append((row, spec, report, cmd))
    run_all([cmd for _, _, report, cmd in evals if not report.is_file()], a.jobs)
    for row, spec, report, cmd in evals:
        rep = json.loads(report.read_text())
        fr = rep["classes"]["fractions"]
        row["evals"].append(
            {
                "sampler": spec,
                "command": " ".join(cmd[2:]),
                "nfe": rep["protocol"]["samples"]["nfe"],
                "dfid": rep["dfid"],
                "class_range_pct": [round(100 * min(fr), 1), round(100 * max(fr), 1)],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown, one line per (variant, sampler)."""
    out = [
        "| variant | overrides | steps | sampler | NFE | dFID | classes % |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for e in r["evals"]:
            lo, hi = e["class_range_pct"]
            sets = ", ".join(f"`{s}`" for s in r["overrides"]) or "–"
            out.append(
                f"| {r['variant']} | {sets} | {r['steps']} | {e['sampler']} | {e['nfe']} "
                f"| {e['dfid']:.2f} "
                f"| {lo}–{hi} |"
            )
    return "\n".join(out)


def make_plan(variants: str, own: list[str]) -> dict[str, list[str]]:
    """The variants to run: ``--variants`` (built-in names, or names ``--variant`` defines)
    and every ``--variant NAME=set1;set2``, each with its list of ``--set`` overrides."""
    defined = dict(item.partition("=")[::2] for item in own)
    bad = [k for k in defined if not re.fullmatch(r"[\w.+-]+", k) or k in (".", "..")]
    if bad:
        raise ConfigError(
            f"--variant: the name {bad[0]!r} is not a folder name; use letters, digits, "
            "'.', '+', '-' or '_' before the first '=', e.g. --variant p0=training.p_mean=0"
        )
    names = [k for k in variants.split(",") if k]
    unknown = [k for k in names if k not in VARIANTS and k not in defined]
    if unknown:
        raise ConfigError(
            f"--variants: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}, "
            "or define one with --variant NAME=KEY=VALUE;..."
        )
    plan = {k: VARIANTS[k] for k in names if k not in defined}
    return plan | {name: [s for s in sets.split(";") if s] for name, sets in defined.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="mnist-cpu")
    p.add_argument(
        "--minutes", type=float, help="training minutes (default 60; with --steps: a cap)"
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="names from VARIANTS or --variant (default: every built-in one)",
    )
    p.add_argument("--variant", action="append", default=[], help="NAME=set1;set2 (repeatable)")
    p.add_argument(
        "--samplers", default="config;heun:35", help="'config' or NAME:NFE, ';'-separated"
    )
    p.add_argument("--n", type=int, default=1000, help="samples per evaluation")
    p.add_argument("--runs", type=Path, default=Path("runs/cpu_hour"), help="run folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, help="train exactly this many steps (not --minutes)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (for training and eval)")
    p.add_argument("--jobs", type=int, default=1, help="variants at once (a GPU; 1 on a CPU)")
    a = p.parse_args()
    if not a.steps and not a.minutes:
        a.minutes = 60.0
    plan = make_plan(a.variants, a.variant)
    head = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {**machine(), "matmul_gflops_1024": round(matmul_gflops(), 1)},
        "config": a.config,
        "minutes": a.minutes,
        "steps": a.steps,
        "device": a.device,
        "n": a.n,
    }
    print(json.dumps(head["machine"]), file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = run_sweep(plan, a)
    with atomic_write(a.out, "w") as f:
        json.dump({**head, "rows": rows}, f, indent=1)
    with atomic_write(a.out.with_suffix(".md"), "w") as f:
        f.write(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    _main.run(main)
