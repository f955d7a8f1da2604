"""How often "every class within LOW–HIGH" holds at N samples: for real images and for models.

Issue 11's class rule (MNIST, every class 8–12 % of N = 1,000 samples) is a per-evaluation
test, and a class share of N = 1,000 has a binomial spread of about ±1 point. This script
puts a number on that:

* **real images**: the shipped classifier's predictions on the training split, and the share
  of ``--draws`` random subsets of N of them (without replacement) that pass the rule;
* **each run and sampler setting** in the JSONs given (``quality_vs_nfe.py`` tables or
  ``ncsn eval`` reports, pooled over files of the same run and setting): the evaluations that
  pass, the pooled class shares, and the pass rate those pooled shares imply at N (multinomial
  draws): what a model with exactly those shares would score.

    NCSN_DATA_ROOT=../shared/data python benchmarks/class_rule.py \\
        docs/results/mnist/cpu_hour/ema0.9995_heun_churn40.json --out /tmp/class_rule.json
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

import _main
from _samplers import machine
from ncsn.data import as_tensor, get_dataset
from ncsn.errors import DataError
from ncsn.io import atomic_write
from ncsn.metrics.classifier import classifier_outputs, load_classifier
from ncsn.metrics.domain import class_histogram


def passes(counts: np.ndarray, low: float, high: float) -> np.ndarray:
    """Whether every class share of each row of ``counts`` (..., K) lies in [low, high]."""
    shares = counts / counts.sum(axis=-1, keepdims=True)
    return (shares.min(axis=-1) >= low) & (shares.max(axis=-1) <= high)


def real_counts(dataset: str, root: str | None = None) -> np.ndarray:
    """Class counts of the shipped classifier's predictions on the training split."""
    images, _ = as_tensor(get_dataset(dataset, root=root, split="train"))
    _, probs = classifier_outputs(load_classifier(dataset), images)
    return np.array(class_histogram(probs)["counts"])


# the fields of a quality_vs_nfe.py row or an eval report's "samples" that are not the setting
NOT_SETTING = {"checkpoint", "weights", "seed", "seconds", "budget", "class_counts"}
NOT_SETTING |= {"dfid", "fid", "confidence", "min_class_fraction"}


def _evaluation(path: Path, checkpoint: str, fields: dict, counts: list[int]) -> dict:
    """One evaluation of the report ``path``: its run folder (``RUN/checkpoints/step_N...``
    -> ``RUN``), its sampler setting, its seed and its class counts."""
    if not (isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts)):
        raise DataError(f"{path}: class counts {counts!r} are not counts")
    if sum(counts) == 0:
        raise DataError(f"{path}: an evaluation with no samples (class counts all 0)")
    setting = tuple(sorted((k, v) for k, v in fields.items() if k not in NOT_SETTING))
    run = checkpoint.split("/checkpoints/")[0].rstrip("/")
    return {"run": run, "setting": setting, "seed": fields.get("seed"), "counts": counts}


def evaluations(path: Path, dataset: str) -> list[dict]:
    """The evaluations with class counts in one JSON (an eval report or a quality_vs_nfe table)
    of samples of ``dataset`` (checked where the JSON records its data set)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read a JSON report ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a report (a JSON object is expected)")
    protocol = data.get("protocol", {})  # an ncsn eval report's; a table has none
    recorded = data.get("dataset", protocol.get("dataset", dataset))
    if recorded != dataset:
        raise DataError(f"{path}: samples of {recorded!r}, not {dataset!r}; give --dataset")
    if "classes" in data:  # one ncsn eval report; of a samples file, it has no "samples"
        s = protocol.get("samples") or {"seed": protocol.get("seed")}
        return [_evaluation(path, s.get("checkpoint", str(path)), s, data["classes"]["counts"])]
    found = [
        _evaluation(path, data.get("checkpoint", "?"), row, row["class_counts"])
        for row in data.get("rows", [])
        if "class_counts" in row
    ]
    if not found:
        raise DataError(
            f"{path}: no class counts; give an ncsn eval report (--metrics classes) or a "
            "quality_vs_nfe.py table"
        )
    return found


def _label(run: str, setting: dict) -> str:
    """``RUN: SAMPLER @ NFE``, or the report's path for samples scored from a file."""
    return f"{run}: {setting['sampler']} @ {setting.get('nfe')}" if "sampler" in setting else run


def grouped(found: list[dict]) -> dict[str, list[list[int]]]:
    """Class counts per (run, sampler setting), labelled ``RUN: SAMPLER @ NFE`` (with the whole
    setting where two settings share that label); a seed given twice is an error."""
    groups: dict[tuple, dict] = {}
    for e in found:
        seeds = groups.setdefault((e["run"], e["setting"]), {})
        if e["seed"] in seeds:
            raise DataError(f"{e['run']}: seed {e['seed']} of one setting is given twice")
        seeds[e["seed"]] = e["counts"]
    short = {k: _label(k[0], dict(k[1])) for k in groups}
    labels = list(short.values())
    return {
        short[k] + (f" ({dict(k[1])})" if labels.count(short[k]) > 1 else ""): list(v.values())
        for k, v in groups.items()
    }


def implied_pass_rate(shares, n: int, draws: int, low: float, high: float, rng) -> float:
    """The pass rate of evaluations of ``n`` samples drawn from class ``shares`` (simulated)."""
    return float(passes(rng.multinomial(n, shares, size=draws), low, high).mean())


def summary(name: str, counts: np.ndarray, implied: float, low: float, high: float) -> dict:
    """One table row: evaluations passing, pooled shares, the pass rate ``implied`` by them."""
    pooled = counts.sum(axis=0)
    return {
        "source": name,
        "evaluations": len(counts),
        "passing": int(passes(counts, low, high).sum()),
        "pooled_n": int(pooled.sum()),
        "pooled_pct": [round(100 * float(f), 2) for f in pooled / pooled.sum()],
        "implied_pass_rate": round(implied, 3),
    }


def table(rows: list[dict], n: int, low: float, high: float) -> str:
    rule = f"every class {100 * low:g}–{100 * high:g} %"
    out = [
        f"| source | evaluations passing ({rule}) | pooled N | pooled class range % "
        f"| pass rate implied at N = {n:,} |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = min(r["pooled_pct"]), max(r["pooled_pct"])
        ok = f"{r['passing']} of {r['evaluations']}" if r["evaluations"] else "–"
        out.append(
            f"| {r['source']} | {ok} | {r['pooled_n']:,} | {lo:.1f}–{hi:.1f} "
            f"| {100 * r['implied_pass_rate']:.0f} % |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="*", type=Path, help="quality_vs_nfe.py or ncsn eval JSONs")
    p.add_argument("--dataset", default="mnist", choices=["digits", "mnist"])
    p.add_argument("--data-root", help="folder holding MNIST (default: $NCSN_DATA_ROOT)")
    p.add_argument("--n", type=int, default=1000, help="samples per evaluation")
    p.add_argument("--low", type=float, default=0.08)
    p.add_argument("--high", type=float, default=0.12)
    p.add_argument("--draws", type=int, default=20000, help="simulated evaluations per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    a = p.parse_args()
    if not (0 <= a.low < a.high <= 1 and a.n > 0 and a.draws > 0):
        p.error("need 0 <= --low < --high <= 1, --n > 0 and --draws > 0")
    if a.out and a.out.resolve() in {r.resolve() for r in a.reports}:
        raise DataError(f"--out {a.out} is one of the reports read; give another path")
    groups = grouped([e for path in a.reports for e in evaluations(path, a.dataset)])
    rng = np.random.default_rng(a.seed)
    real = real_counts(a.dataset, a.data_root)
    subsets = rng.multivariate_hypergeometric(real, a.n, size=a.draws)  # N real images each
    real_rate = float(passes(subsets, a.low, a.high).mean())
    rows = [summary(f"real {a.dataset} training images", real[None], real_rate, a.low, a.high)]
    rows[0]["evaluations"] = 0  # the pooled row is the whole split, not an evaluation
    for name, counts in groups.items():
        if any(len(c) != len(real) for c in counts):
            raise DataError(f"{name}: class counts are not of {len(real)} {a.dataset} classes")
        pooled = np.sum(counts, axis=0)
        row_rng = np.random.default_rng([a.seed, zlib.crc32(name.encode())])  # order-free
        rate = implied_pass_rate(pooled / pooled.sum(), a.n, a.draws, a.low, a.high, row_rng)
        rows.append(summary(name, np.array(counts), rate, a.low, a.high))
    print(table(rows, a.n, a.low, a.high))
    if a.out:
        with atomic_write(a.out, "w") as f:
            json.dump(
                {
                    "command": " ".join(["python", *sys.argv]),
                    "machine": machine(),
                    "n": a.n,
                    "draws": a.draws,
                    "rows": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    _main.run(main)
