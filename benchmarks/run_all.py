"""Benchmark every model at the paper's shapes and the CPU configs; print a table, save JSON.

Each case runs in a fresh process (``bench_model.py``) twice: with ncsn's default allocator
settings and with glibc's defaults (``NCSN_NO_MALLOC_TUNING=1``), and the table reports the
ratio. Medians of ``--train-steps`` training steps (batch 128) and ``--eval-reps`` network
evaluations at batch 100 (the cost of one sampler step).

    python benchmarks/run_all.py --out benchmarks/results.json
    python benchmarks/run_all.py --cases unet-digits,unet-mnist-cpu --train-steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CASES = "unet-digits,unet-mnist-cpu,ncsn-mnist,ncsn-cifar10,ncsnv2-cifar10"


def _run(case: str, tuned: bool, a) -> dict:
    env = dict(os.environ)
    env.pop("NCSN_NO_MALLOC_TUNING", None)
    if not tuned:
        env["NCSN_NO_MALLOC_TUNING"] = "1"
    cmd = [
        sys.executable,
        str(HERE / "bench_model.py"),
        "--case",
        case,
        "--train-steps",
        str(a.train_steps),
        "--eval-reps",
        str(a.eval_reps),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--eval-reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument(
        "--baseline-cases",
        default="unet-digits,unet-mnist-cpu,ncsn-mnist",
        help="cases also run with glibc's default allocator ('all' or a list)",
    )
    a = p.parse_args()
    start = time.time()
    rows = []
    for case in a.cases.split(","):
        tuned = _run(case, True, a)
        wanted = a.baseline_cases == "all" or case in a.baseline_cases.split(",")
        base = _run(case, False, a) if wanted else None
        rows.append({"tuned": tuned, "glibc_default": base})
        print(f"done {case}", file=sys.stderr)
    head = (
        f"{'case':<16}{'params':>11}{'train s/step':>13}{'img/s':>8}{'user s':>8}"
        f"{'sys s':>7}{'eval s':>8}{'peak MB':>9}{'vs glibc':>9}"
    )
    print(head)
    for r in rows:
        t, b = r["tuned"], r["glibc_default"]
        ratio = f"{b['train_step_s'] / t['train_step_s']:.2f}x" if b else "-"
        print(
            f"{t['case']:<16}{t['params']:>11,}{t['train_step_s']:>13.3f}"
            f"{t['train_images_per_s']:>8.1f}{t['train_user_s']:>8.2f}{t['train_sys_s']:>7.2f}"
            f"{t['eval_s']:>8.3f}{t['peak_rss_mb']:>9.0f}{ratio:>9}"
        )
        if b:
            print(
                f"{'  glibc default':<16}{'':>11}{b['train_step_s']:>13.3f}"
                f"{b['train_images_per_s']:>8.1f}{b['train_user_s']:>8.2f}"
                f"{b['train_sys_s']:>7.2f}{b['eval_s']:>8.3f}{b['peak_rss_mb']:>9.0f}"
            )
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "seconds": round(time.time() - start, 1),
        "command": " ".join(sys.argv),
        "results": rows,
    }
    a.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {a.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
