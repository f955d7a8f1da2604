"""Print the markdown tables of docs/results.md from the JSON files benchmarks/results.sh wrote.

python benchmarks/results_table.py docs/results/digits docs/results/mnist
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def quality_table(folders: list[Path]) -> str:
    """One row per run: domain metrics vs test (and train), DSM, neighbours; plus real data."""
    head = (
        "| run | N | dFID test (train) | dKID test | classifier IS | confidence "
        "| classes min–max % | held-out DSM | NN pixel: median (test→train) | suspected copies |"
    )
    rows = [head, "|" + "---|" * 10]
    for folder in folders:
        rep, vs_train = _load(folder / "report.json"), _load(folder / "report_vs_train.json")
        real = _load(folder / "real_train_images.json")
        runs = [(folder.name, rep, vs_train)]
        for extra in sorted(folder.glob("report_*.json")):  # other samplers, e.g. report_ancestral
            if extra.name != "report_vs_train.json":
                runs.append((f"{folder.name}: {extra.stem[len('report_') :]}", _load(extra), None))
        runs.append((f"{folder.name}: real", real, None))
        for label, r, t in runs:
            if r is None:
                continue
            frac = r["classes"]["fractions"]
            nn = r.get("nn")
            rows.append(
                "| "
                + " | ".join(
                    [
                        label,
                        str(r["protocol"]["n_samples"]),
                        f"{r['dfid']:.2f}" + (f" ({t['dfid']:.2f})" if t else ""),
                        f"{r['dkid']['mean']:.3f} ± {r['dkid']['std']:.3f}",
                        f"{r['dis']['mean']:.2f}",
                        f"{r['classes']['confidence']:.3f}",
                        f"{100 * min(frac):.1f}–{100 * max(frac):.1f}",
                        f"{r['dsm']['loss']:.2f}" if "dsm" in r else "–",
                        (
                            f"{nn['median']:.2f} ({nn['test_to_train']['median']:.2f})"
                            if nn
                            else "–"
                        ),
                        str(nn["closer_than_any_test"]) if nn else "–",
                    ]
                )
                + " |"
            )
    return "\n".join(rows)


def sampler_table(folder: Path) -> str:
    """Quality vs network evaluations and seconds for one checkpoint."""
    rep = _load(folder / "samplers.json")
    if rep is None:
        return f"(no {folder / 'samplers.json'})"
    rows = [
        "| sampler | levels × steps | ε | NFE | seconds | dFID | confidence | smallest class % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        eps = f"{r['eps']:.1e}" if r.get("eps") else "–"
        rows.append(
            f"| {r['label']} | {r['levels']} × {r['steps_each']} | {eps} | {r['nfe']} "
            f"| {r['seconds']:.1f} | {r['dfid']:.2f} | {r['confidence']:.3f} "
            f"| {100 * r['min_class_fraction']:.1f} |"
        )
    return (
        "\n".join(rows)
        + f"\n\nN = {rep['n']} samples per row, seed {rep['seed']}, {rep['threads']} threads, "
        f"{rep['checkpoint_file']}; whole comparison {rep['seconds_total'] / 60:.1f} min."
    )


def bench_table(path: Path) -> str:
    """The benchmarks/run_all.py report as markdown."""
    rep = _load(path)
    if rep is None:
        return f"(no {path})"
    rows = [
        "| case | shape | params | train s/step (batch 128) | img/s | CPU user / sys s "
        "| eval s (batch 100) | peak RSS MB | glibc default: s/step, sys s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["results"]:
        t, b = r["tuned"], r["glibc_default"]
        base = f"{b['train_step_s']:.3f}, {b['train_sys_s']:.2f}" if b else "–"
        ratio = f"{b['train_step_s'] / t['train_step_s']:.2f}×" if b else "–"
        rows.append(
            f"| {t['case']} | {'×'.join(map(str, t['shape']))} | {t['params']:,} "
            f"| {t['train_step_s']:.3f} | {t['train_images_per_s']:.1f} "
            f"| {t['train_user_s']:.2f} / {t['train_sys_s']:.2f} | {t['eval_s']:.3f} "
            f"| {t['peak_rss_mb']:.0f} | {base} | {ratio} |"
        )
    first = rep["results"][0]["tuned"]
    return (
        "\n".join(rows) + f"\n\n{rep['machine']}, {first['threads']} threads; medians of "
        f"{first['train_steps']} steps and {first['eval_reps']} evaluations after one warm-up; "
        f"whole run {rep['seconds'] / 60:.1f} min (`{rep.get('command', '')}`)."
    )


def main() -> None:
    args = sys.argv[1:]
    bench = Path("benchmarks/results.json")
    if "--bench" in args:
        i = args.index("--bench")
        bench = Path(args[i + 1])
        del args[i : i + 2]
    folders = [Path(p) for p in args] or sorted(Path("docs/results").glob("*/"))
    print(quality_table(folders))
    for f in folders:
        print(f"\n### {f.name}\n")
        print(sampler_table(f))
    print("\n### speed\n")
    print(bench_table(bench))


if __name__ == "__main__":
    main()
