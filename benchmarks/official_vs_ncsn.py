"""Side by side: the official NCSN code (ermongroup/ncsn) against ncsn's network, same machine.

Runs the official ``CondRefineNetDilated`` from a checkout you point to (``--official DIR``;
no official code is copied into this repository) and ncsn's equivalent network,
``ncsn.build_model(load_config(DATASET))``, in ONE process, alternating them so that load
changes on the machine hit both alike, and prints medians and ratios of

- a training step: the annealed DSM loss at batch 128, backward, Adam (each side with its
  own loss code: the official ``anneal_dsm_score_estimation``, ncsn's ``anneal_dsm_loss``);
- one network evaluation at batch 100 (what each sampler does per Langevin step, both under
  ``torch.no_grad()`` as the samplers run them);
- the peak resident memory of a training process (``ru_maxrss``), measured for each side in
  a separate subprocess;
- GFLOP/s (``torch.utils.flop_counter``) next to this machine's own fp32 matmul and 3x3
  convolution GFLOP/s, measured by this script, and the CPU's flags.

``ncsn-plain`` is ncsn's network with the plain PyTorch layers and NCHW activations
(:func:`ncsn.models.fused.plain_ops`, ``channels_last=False``): what the speed-ups replace.
``ncsn-ckpt`` adds activation checkpointing (training only); ``ncsn-compiled`` is ncsn's
network under ``torch.compile`` (compiled during the warm-up, which is not timed; the
compile time is reported).

    python benchmarks/official_vs_ncsn.py --official /path/to/ncsn --dataset mnist

The official code runs unmodified on torch 2.x; the script only imports its model and loss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import _main
from ncsn.acceleration import apply_activation_checkpointing
from ncsn.api import build_model
from ncsn.config import load_config
from ncsn.losses import anneal_dsm_loss
from ncsn.models.fused import plain_ops
from ncsn.perf import tune_allocator
from ncsn.schedules import geometric_sigmas

SHAPES = {"mnist": (1, 28, 64), "cifar10": (3, 32, 128)}  # channels, size, ngf (the paper's)
SIDES = ("official", "ncsn", "ncsn-plain", "ncsn-ckpt", "ncsn-compiled")


def cpu_info() -> dict:
    """The CPU's name and the instruction-set flags that matter for these kernels."""
    name, flags = platform.processor(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name.startswith("AMD"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"]
    return {
        "cpu": name,
        "flags": [f for f in wanted if f in flags],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "isa": torch.backends.cpu.get_cpu_capability(),
    }


# --------------------------------------------------------------------------------------
# the two implementations
# --------------------------------------------------------------------------------------


def load_official(root: Path, channels: int, size: int, ngf: int, levels: int):
    """The official ``CondRefineNetDilated`` and its loss, imported from a checkout."""
    if not (root / "models" / "cond_refinenet_dilated.py").is_file():
        raise SystemExit(
            f"--official {root}: no models/cond_refinenet_dilated.py there; point it to a "
            "checkout of https://github.com/ermongroup/ncsn"
        )
    sys.path.insert(0, str(root))
    from losses.dsm import anneal_dsm_score_estimation  # type: ignore[import-not-found]
    from models.cond_refinenet_dilated import (  # type: ignore[import-not-found]
        CondRefineNetDilated,
    )

    ns = types.SimpleNamespace
    config = ns(
        data=ns(logit_transform=False, channels=channels, image_size=size),
        model=ns(ngf=ngf, num_classes=levels),
    )
    return CondRefineNetDilated(config), anneal_dsm_score_estimation


class Side:
    """One implementation: a training step and an evaluation as closures."""

    def __init__(self, name: str, args: argparse.Namespace, official_root: Path | None):
        channels, size, ngf = SHAPES[args.dataset]
        self.name = name
        torch.manual_seed(0)
        self.sigmas = geometric_sigmas(1.0, 0.01, 10)
        self.x = torch.rand(args.batch, channels, size, size)
        self.xe = torch.rand(args.eval_batch, channels, size, size)
        self.plain = name == "ncsn-plain"
        if name == "official":
            assert official_root is not None
            self.model, self.loss = load_official(official_root, channels, size, ngf, 10)
        else:
            cfg = load_config(args.dataset)
            self.model = build_model(cfg, channels=channels, image_size=size)
            if self.plain:  # NCHW activations and weights
                self.model.net.channels_last = False
                self.model.to(memory_format=torch.contiguous_format)
            if name == "ncsn-ckpt":  # training.activation_checkpointing
                apply_activation_checkpointing(self.model)
        self.net = self.model  # what the step and the evaluation call
        if name == "ncsn-compiled":
            self.net = torch.compile(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999))
        self.gen = torch.Generator().manual_seed(1)

    def _ops(self):
        return plain_ops() if self.plain else contextlib.nullcontext()

    def step(self) -> None:
        """One optimisation step at the training batch."""
        with self._ops():
            if self.name == "official":
                labels = torch.randint(0, 10, (self.x.shape[0],), generator=self.gen)
                loss = self.loss(self.model, self.x, labels, self.sigmas, 2.0)
            else:
                loss = anneal_dsm_loss(self.net, self.x, self.sigmas, generator=self.gen).loss
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def evaluate(self, autocast: bool = False) -> torch.Tensor:
        """One network evaluation at the sampling batch (the smallest noise level)."""
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with self._ops(), amp:
            if self.name == "official":
                with torch.no_grad():
                    labels = torch.full((self.xe.shape[0],), 9, dtype=torch.long)
                    return self.model(self.xe, labels)
            with torch.no_grad():  # as ncsn's samplers (inference_mode measured no faster)
                return self.net(self.xe, self.sigmas[-1])


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(
    tasks: dict[str, Callable[[], object]], repeats: int, warmup: dict | None = None
) -> dict[str, list[float]]:
    """Time each task ``repeats`` times after one warm-up call (its time goes to ``warmup``),
    in alternating order (forward, then reversed: ABBA) so that drifts in load cancel."""
    for k, fn in tasks.items():
        t = _time(fn)
        if warmup is not None:
            warmup[k] = round(t, 2)
    times: dict[str, list[float]] = {k: [] for k in tasks}
    names = list(tasks)
    for r in range(repeats):
        for k in names if r % 2 == 0 else reversed(names):
            times[k].append(_time(tasks[k]))
    return times


def step_gflop(side: Side) -> float:
    """GFLOP of one training step, as torch's FlopCounter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        side.step()
    return counter.get_total_flops() / 1e9


CONV_OPS = (  # oneDNN's kernels, and PyTorch's own where oneDNN is not used
    "aten::mkldnn_convolution",
    "aten::convolution_backward",
    "aten::_slow_conv2d_forward",
    "aten::_slow_conv2d_backward",
)


def conv_share(side: Side) -> float:
    """Fraction of one training step's CPU time spent inside convolution kernels (forward
    and backward), from ``torch.profiler``'s self times."""
    from torch.profiler import profile

    with profile() as prof:
        side.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS)
    return conv / total


def conv_ceiling(res: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Per side, from its convolution time (step time x convolution share): the most it could
    gain on the official if everything else took no time (official step time / convolution
    time), and the rate its convolutions run at (the step's GFLOP / convolution time)."""
    off = res["train_step_s"]["official"]
    conv_s = {k: res["train_step_s"][k] * share for k, share in res["conv_share"].items() if share}
    ceiling = {k: round(off / t, 3) for k, t in conv_s.items()}
    rate = {k: round(res["step_gflop"][k] / t, 1) for k, t in conv_s.items()}
    return ceiling, rate


def machine_gflops(threads: int) -> dict[str, float]:
    """This machine's fp32 GFLOP/s for a 2048^2 matmul and a 3x3 convolution (64 -> 64
    channels, 28x28, batch 32; NCHW and channels-last), best of 5."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x = torch.randn(32, 64, 28, 28)
    w = torch.randn(64, 64, 3, 3)
    xc = x.contiguous(memory_format=torch.channels_last)
    conv_flop = 2 * 32 * 64 * 64 * 9 * 28 * 28
    out = {}
    for key, fn, flop in (
        ("matmul", lambda: a @ b, 2 * 2048**3),
        ("conv3x3", lambda: F.conv2d(x, w, padding=1), conv_flop),
        ("conv3x3_channels_last", lambda: F.conv2d(xc, w, padding=1), conv_flop),
    ):
        fn()
        out[key] = round(flop / min(_time(fn) for _ in range(5)) / 1e9, 1)
    return out


def peak_rss_child(args: argparse.Namespace, side: str) -> float:
    """Peak RSS (GB) of a fresh process that builds ``side`` and takes 3 training steps."""
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        side,
        "--dataset",
        args.dataset,
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
    ]
    if args.official:
        cmd += ["--official", str(args.official)]
    if args.no_malloc_tuning:
        cmd.append("--no-malloc-tuning")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"peak-RSS subprocess for {side} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def same_weights(sides: dict[str, Side]) -> float | None:
    """Give every ncsn side the official network's initial weights (when this ncsn has the
    official-format mapping) and return the largest relative difference between the
    official's and ncsn's evaluation outputs; ``None`` when the mapping is unavailable."""
    try:
        from ncsn.official_format import map_official_state
    except ImportError:
        return None
    official = sides["official"]
    state = official.model.state_dict()
    worst = 0.0
    ref = official.evaluate()
    for name, side in sides.items():
        if name == "official":
            continue
        side.model.load_state_dict(map_official_state(state, side.model.state_dict(), name))
        out = side.evaluate()
        worst = max(worst, float((out - ref).abs().max() / ref.abs().max()))
    return worst


def rss_child(args: argparse.Namespace) -> None:
    side = Side(args.rss_child, args, args.official)
    for _ in range(3):
        side.step()
    print(peak_rss_gb())


def peak_rss_gb() -> float:
    """This process's peak resident memory (``VmHWM``; ``ru_maxrss`` would include the
    parent's memory at fork time)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def median(v: list[float]) -> float:
    return statistics.median(v)


def paired(times: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of official time / side time within the same round: robust to
    load that drifts between rounds (each round times every side back to back)."""
    off = times["official"]
    return {
        k: round(median([a / b for a, b in zip(off, v, strict=True)]), 3) for k, v in times.items()
    }


def report(args: argparse.Namespace, sides: dict[str, Side]) -> dict:
    """Run all measurements; returns the results as a dict."""
    names = list(sides)
    res: dict = {"dataset": args.dataset, "batch": args.batch, "eval_batch": args.eval_batch}
    res["machine"] = cpu_info() | {"malloc_tuned": not args.no_malloc_tuning}
    if args.rss:  # first, while this process is still small (children run one at a time)
        res["peak_rss_gb"] = {k: round(peak_rss_child(args, k), 2) for k in names}
    res["machine_gflops"] = machine_gflops(args.threads)
    res["max_rel_diff_official_vs_ncsn"] = same_weights(sides)
    res["step_gflop"] = {
        k: round(step_gflop(s), 1) for k, s in sides.items() if k != "ncsn-compiled"
    }
    res["step_gflop"].setdefault("ncsn-compiled", res["step_gflop"].get("ncsn", 0.0))
    res["train_warmup_s"], res["eval_warmup_s"] = {}, {}
    train = alternate({k: s.step for k, s in sides.items()}, args.repeats, res["train_warmup_s"])
    evals = alternate(
        {k: s.evaluate for k, s in sides.items() if k != "ncsn-ckpt"},
        args.eval_repeats,
        res["eval_warmup_s"],
    )
    res["conv_share"] = {
        k: round(conv_share(s), 4) for k, s in sides.items() if k != "ncsn-compiled"
    }
    res["train_speedup_paired"] = paired(train)
    res["eval_speedup_paired"] = paired(evals)
    res["train_step_s"] = {k: round(median(v), 3) for k, v in train.items()}
    res["train_step_min_s"] = {k: round(min(v), 3) for k, v in train.items()}
    res["train_step_all_s"] = {k: [round(t, 3) for t in v] for k, v in train.items()}
    res["conv_ceiling_vs_official"], res["conv_gflops_in_step"] = conv_ceiling(res)
    res["eval_s"] = {k: round(median(v), 3) for k, v in evals.items()}
    res["eval_min_s"] = {k: round(min(v), 3) for k, v in evals.items()}
    res["eval_all_s"] = {k: [round(t, 3) for t in v] for k, v in evals.items()}
    if args.bf16:
        ncsn = sides["ncsn"]
        bf = alternate(
            {"fp32": ncsn.evaluate, "bf16": lambda: ncsn.evaluate(autocast=True)},
            args.eval_repeats,
        )
        out32, out16 = ncsn.evaluate(), ncsn.evaluate(autocast=True).float()
        res["bf16_eval_s"] = {k: round(median(v), 3) for k, v in bf.items()}
        res["bf16_max_rel_diff"] = float((out16 - out32).abs().max() / out32.abs().max())
    return res


def print_table(res: dict) -> None:
    m = res["machine"]
    print(f"# {res['dataset']}: batch {res['batch']} (train), {res['eval_batch']} (eval)")
    print("# speed: ratio of medians (median over rounds of the within-round ratio)")
    print(f"# {m['cpu']}; flags {' '.join(m['flags'])}; torch {m['torch']} ({m['isa']}), ")
    print(f"#   {m['threads']} threads, malloc tuned: {m['malloc_tuned']}")
    g = res["machine_gflops"]
    print(
        f"# machine fp32 GFLOP/s: matmul {g['matmul']}, conv3x3 {g['conv3x3']} (NCHW), "
        f"{g['conv3x3_channels_last']} (channels-last)"
    )
    if res["max_rel_diff_official_vs_ncsn"] is not None:
        print(
            f"# same weights: max |ncsn - official| / max |official| = "
            f"{res['max_rel_diff_official_vs_ncsn']:.2e}"
        )
    off_t, off_e = res["train_step_s"]["official"], res["eval_s"]["official"]
    rss = res.get("peak_rss_gb", {})
    print(
        "| | train step s | speed vs official | GFLOP/s | eval s | speed vs official "
        "| peak RSS GB | memory vs official |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, t in res["train_step_s"].items():
        e = res["eval_s"].get(k)
        gf = res["step_gflop"][k] / t
        pt, pe = res["train_speedup_paired"][k], res["eval_speedup_paired"].get(k)
        cells = [k, f"{t:.3f}", f"{off_t / t:.2f}x ({pt:.2f}x)", f"{gf:.0f}"]
        cells += [f"{e:.3f}", f"{off_e / e:.2f}x ({pe:.2f}x)"] if e else ["-", "-"]
        if k in rss:
            cells += [f"{rss[k]:.2f}", f"{rss[k] / rss['official']:.2f}x"]
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    share, ceil = res["conv_share"], res["conv_ceiling_vs_official"]
    print(
        "# share of a training step inside convolution kernels (torch.profiler): "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in share.items())
    )
    print(
        "# with zero time outside its convolutions, each side would be at most: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in ceil.items())
        + " the official's training speed"
    )
    print(
        "# their convolutions run at (GFLOP/s, the step's FLOP over its convolution time): "
        + ", ".join(f"{k} {v:.0f}" for k, v in res["conv_gflops_in_step"].items())
    )
    if "ncsn-compiled" in res["train_warmup_s"]:
        print(
            f"# torch.compile: first training step {res['train_warmup_s']['ncsn-compiled']} s, "
            f"first evaluation {res['eval_warmup_s']['ncsn-compiled']} s (compilation)"
        )
    if "bf16_eval_s" in res:
        b = res["bf16_eval_s"]
        print(
            f"# bf16 autocast eval (ncsn): {b['bf16']:.3f} s vs fp32 {b['fp32']:.3f} s "
            f"({b['fp32'] / b['bf16']:.2f}x), max rel diff {res['bf16_max_rel_diff']:.1e}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", type=Path, help="checkout of ermongroup/ncsn")
    p.add_argument("--dataset", choices=sorted(SHAPES), default="mnist")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5, help="timed training steps per side")
    p.add_argument("--eval-repeats", type=int, default=7, help="timed evaluations per side")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--sides", default="official,ncsn,ncsn-plain", help=f"from {SIDES}")
    p.add_argument("--rss", action="store_true", help="peak RSS of each side (subprocesses)")
    p.add_argument("--bf16", action="store_true", help="also time ncsn's eval under bf16")
    p.add_argument("--no-malloc-tuning", action="store_true", help="glibc's default malloc")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--rss-child", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.no_malloc_tuning:
        tune_allocator()  # what `ncsn train` and `ncsn sample` do; applies to both sides
    if args.rss_child:
        return rss_child(args)
    names = [s.strip() for s in args.sides.split(",") if s.strip()]
    if "official" not in names or not args.official:
        raise SystemExit("--official DIR is required and --sides must include 'official'")
    if unknown := set(names) - set(SIDES):
        raise SystemExit(f"unknown --sides {sorted(unknown)}; choose from {', '.join(SIDES)}")
    sides = {k: Side(k, args, args.official) for k in names}
    t0 = time.time()
    res = report(args, sides)
    res["wall_s"] = round(time.time() - t0, 1)
    res["command"] = " ".join(["python", *sys.argv])
    res["date"] = time.strftime("%Y-%m-%d")
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    _main.run(main)
