"""On a GPU: images/s of the official NCSN code against ncsn (fp32, bf16, bf16 + compile).

Issue 10, goal 3. Runs the official ``CondRefineNetDilated`` from a checkout you point to
(``--official DIR``, nothing copied into this repository) and ncsn's network built from the
same config, on one CUDA device, and prints, per side, the training images/s (annealed DSM at
``--batch``, backward, Adam) and the evaluation images/s (one network evaluation at
``--eval-batch``, as a sampler step). Sides:

- ``official``: the authors' network and loss, fp32 with PyTorch's defaults (cuDNN may use
  TF32 for convolutions, as the official code would);
- ``ncsn``: ncsn's network, fp32, same defaults;
- ``ncsn-bf16``: bf16 autocast (``training.precision: bf16``) and channels-last;
- ``ncsn-bf16-compiled``: the same under ``torch.compile`` (``training.compile``); the
  compilation is done in the warm-up and its time reported separately;
- ``ncsn-plain``, ``ncsn-plain-bf16``: ncsn's network with PyTorch's own layers
  (:func:`ncsn.models.fused.plain_ops`) instead of the fused ones written for CPUs.

It also checks that ncsn with the official initial weights gives the official outputs (fp32,
TF32 off), and trains ncsn fp32 and bf16 side by side for ``--loss-steps`` steps from the same
weights on the same batches and noise, reporting how far apart the loss curves are.

    python benchmarks/gpu_official_vs_ncsn.py --official /path/to/ncsn --json gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import _main
from ncsn.api import build_model
from ncsn.config import load_config
from ncsn.losses import anneal_dsm_loss
from ncsn.models.fused import plain_ops
from ncsn.official_format import map_official_state
from ncsn.schedules import geometric_sigmas

sys.path.insert(0, str(Path(__file__).parent))
from official_vs_ncsn import SHAPES, load_official  # noqa: E402

SIDES = ("official", "ncsn", "ncsn-bf16", "ncsn-bf16-compiled", "ncsn-plain", "ncsn-plain-bf16")


class Side:
    """One implementation on the GPU: its training step and its evaluation."""

    def __init__(self, name: str, a: argparse.Namespace, init_state: dict | None):
        channels, size, ngf = SHAPES[a.dataset]
        self.name, self.dev = name, torch.device(a.device)
        self.sigmas = geometric_sigmas(1.0, 0.01, 10).to(self.dev)
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(a.batch, channels, size, size, generator=g).to(self.dev)
        self.xe = torch.rand(a.eval_batch, channels, size, size, generator=g).to(self.dev)
        if name == "official":
            self.model, self.loss = load_official(a.official, channels, size, ngf, 10)
        else:
            self.model = build_model(load_config(a.dataset), channels=channels, image_size=size)
            if init_state is not None:  # the official network's initial weights
                own = self.model.state_dict()
                self.model.load_state_dict(map_official_state(init_state, own, name))
        self.model.to(self.dev)
        self.bf16 = "bf16" in name
        self.plain = "plain" in name  # PyTorch's own layers instead of ncsn's fused CPU ones
        if self.bf16:
            self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
            self.xe = self.xe.contiguous(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if name.endswith("compiled") else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.gen = torch.Generator(self.dev).manual_seed(1)

    def _amp(self):
        stack = contextlib.ExitStack()
        if self.bf16:
            stack.enter_context(torch.autocast(self.dev.type, dtype=torch.bfloat16))
        if self.plain:
            stack.enter_context(plain_ops())
        return stack

    def loss_value(self, x: torch.Tensor) -> torch.Tensor:
        with self._amp():
            if self.name == "official":
                labels = torch.randint(0, 10, (x.shape[0],), device=self.dev, generator=self.gen)
                return self.loss(self.model, x, labels, self.sigmas, 2.0)
            return anneal_dsm_loss(self.net, x, self.sigmas, generator=self.gen).loss.float()

    def step(self, x: torch.Tensor | None = None) -> float:
        loss = self.loss_value(self.x if x is None else x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def evaluate(self) -> torch.Tensor:
        with torch.no_grad(), self._amp():
            if self.name == "official":
                labels = torch.full((self.xe.shape[0],), 9, dtype=torch.long, device=self.dev)
                return self.model(self.xe, labels)
            return self.net(self.xe, self.sigmas[-1])


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int) -> tuple[float, float]:
    """(seconds of the warm-up calls, median seconds of one call), synchronised."""
    sync()
    t = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync()
    warm = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return warm, statistics.median(times)


def exactness(official: Side, a: argparse.Namespace) -> float:
    """Max relative difference of ncsn's output from the official one, same weights, fp32
    without TF32."""
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        ncsn = Side("ncsn", a, official.model.state_dict())
        ref, out = official.evaluate(), ncsn.evaluate()
        return float((out - ref).abs().max() / ref.abs().max())
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def loss_curves(init: dict, a: argparse.Namespace) -> dict:
    """fp32 and bf16 ncsn trained for ``--loss-steps`` steps from the same weights on the same
    batches and noise: the largest relative gap of their 20-step mean losses."""
    sides = {k: Side(k, a, init) for k in ("ncsn", "ncsn-bf16")}
    g = torch.Generator().manual_seed(2)
    data = torch.rand(1024, *sides["ncsn"].x.shape[1:], generator=g)
    losses: dict[str, list[float]] = {k: [] for k in sides}
    for step in range(a.loss_steps):
        x = data[torch.randint(0, 1024, (a.batch,), generator=g)].to(a.device)
        for k, s in sides.items():
            s.gen.manual_seed(100 + step)
            losses[k].append(float(s.step(x).detach()))
    w = 20
    mean = {
        k: [statistics.fmean(v[i : i + w]) for i in range(0, len(v), w)] for k, v in losses.items()
    }
    gap = max(abs(b - f) / f for f, b in zip(mean["ncsn"], mean["ncsn-bf16"], strict=True))
    return {"steps": a.loss_steps, "window": w, "max_rel_gap": round(gap, 4), "means": mean}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", type=Path, required=True, help="checkout of ermongroup/ncsn")
    p.add_argument("--dataset", choices=sorted(SHAPES), default="cifar10")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--loss-steps", type=int, default=200)
    p.add_argument("--sides", default=",".join(SIDES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.manual_seed(0)
    res: dict = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d")}
    gpu = torch.cuda.get_device_name() if a.device.startswith("cuda") else "none (CPU)"
    res |= {"gpu": gpu, "torch": torch.__version__}
    res |= {"dataset": a.dataset, "batch": a.batch, "eval_batch": a.eval_batch, "sides": {}}
    gpu_dev = a.device.startswith("cuda")
    official = Side("official", a, None)
    init = {k: v.detach().clone() for k, v in official.model.state_dict().items()}
    res["max_rel_diff_fp32"] = exactness(official, a)
    print(json.dumps({k: res[k] for k in ("gpu", "torch", "max_rel_diff_fp32")}), flush=True)
    if a.loss_steps:
        res["bf16_vs_fp32_loss"] = loss_curves(init, a)
        print(json.dumps({"bf16_loss_gap": res["bf16_vs_fp32_loss"]["max_rel_gap"]}), flush=True)
    for name in a.sides.split(","):
        side = official if name == "official" else Side(name, a, init)
        t0 = time.perf_counter()
        warm_t, step_s = timed(side.step, a.repeats, a.warmup)
        warm_e, eval_s = timed(side.evaluate, a.repeats, a.warmup)
        row = {
            "train_images_per_s": round(a.batch / step_s, 1),
            "eval_images_per_s": round(a.eval_batch / eval_s, 1),
            "train_step_ms": round(1e3 * step_s, 2),
            "eval_ms": round(1e3 * eval_s, 2),
            "warmup_s": round(warm_t + warm_e, 1),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if gpu_dev else None,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        res["sides"][name] = row
        print(json.dumps({name: row}), flush=True)
        del side
        if gpu_dev:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        if a.json:
            a.json.write_text(json.dumps(res, indent=1) + "\n")
    off = res["sides"].get("official")
    if off:
        for row in res["sides"].values():
            row["train_vs_official"] = round(
                row["train_images_per_s"] / off["train_images_per_s"], 2
            )
            row["eval_vs_official"] = round(row["eval_images_per_s"] / off["eval_images_per_s"], 2)
    print("| side | train img/s | vs official | eval img/s | vs official | peak GB |")
    print("|---|---|---|---|---|---|")
    for k, r in res["sides"].items():
        print(
            f"| {k} | {r['train_images_per_s']:.0f} | {r.get('train_vs_official', 1):.2f}x "
            f"| {r['eval_images_per_s']:.0f} | {r.get('eval_vs_official', 1):.2f}x "
            f"| {r['peak_gb']} |"
        )
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    _main.run(main)
