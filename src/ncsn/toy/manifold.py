"""Fig. 1 of the paper (manifold hypothesis): sliced score matching with and without noise."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ncsn.losses import sliced_score_matching_loss
from ncsn.rng import randint, randn
from ncsn.toy._common import _finish, _gen, _new_model, _one_thread, _out_dir, _train

FIG1_NET = dict(dim=64, hidden=256, depth=2, sigmas=None, scale_by_sigma=False, embed_dim=0)


def _curve_stats(losses: list[float], n_points: int = 200) -> dict[str, Any]:
    """Final value, fluctuation measures and a downsampled copy of a loss curve.

    Fluctuation is measured on the last 20% of steps: the plain std, the std relative to the
    mean's magnitude, and the std of the residual after a fitted straight line (so that a
    steady trend does not count as fluctuation).
    """
    arr = np.asarray(losses, dtype=np.float64)
    if arr.size < 10:
        return {"steps_run": int(arr.size), "curve_mean": arr.tolist()}
    tail = arr[-(arr.size // 5) :]
    t = np.arange(tail.size)
    slope, icpt = np.polyfit(t, tail, 1)
    chunks = np.array_split(arr, min(n_points, arr.size))
    return {
        "steps_run": int(arr.size),
        "final_loss": float(arr[-max(arr.size // 100, 1) :].mean()),
        "min_loss": float(arr.min()),
        "std_last20": float(tail.std()),
        "relative_std_last20": float(tail.std() / max(abs(tail.mean()), 1e-12)),
        "detrended_std_last20": float((tail - (slope * t + icpt)).std()),
        "slope_last20_per_1k_steps": float(slope * 1000),
        "curve_step": np.cumsum([c.size for c in chunks]).tolist(),
        "curve_mean": [float(c.mean()) for c in chunks],
    }


def _gaussian_reference(x: torch.Tensor, noise: float) -> float:
    """Score matching objective of the best Gaussian score model, ``-tr(C^-1)/2``.

    ``C`` is the data covariance plus ``noise^2 I``; -inf when ``C`` is singular.
    """
    cov = torch.cov(x.double().T) + noise**2 * torch.eye(x.shape[1], dtype=torch.float64)
    ev = torch.linalg.eigvalsh(cov)
    return -math.inf if float(ev.min()) <= 1e-12 else float(-0.5 * (1.0 / ev).sum())


def _ssm_run(xs, noise, seed, device, steps, batch_size, lr, desc, progress) -> tuple:
    """Train a fresh ScoreMLP by SSM-VR on minibatches of ``xs`` plus ``N(0, noise^2 I)``.

    Returns:
        ``(losses, step of the first non-finite loss or None)``, as from ``_train``.
    """
    model = _new_model(seed, device, activation="softplus", **FIG1_NET)
    g_batch, g_noise, g_proj = _gen(seed), _gen(seed + 1), _gen(seed + 2)

    def loss_fn() -> torch.Tensor:
        x = xs[randint(xs.shape[0], (batch_size,), xs.device, g_batch)]
        if noise > 0:
            x = x + noise * randn(x.shape, x, g_noise)
        return sliced_score_matching_loss(model, x, variance_reduction=True, generator=g_proj)

    return _train(loss_fn, model, steps, lr=lr, desc=desc, progress=progress)


def _fig1_figure(curves: dict[str, list[float]], noise_std: float) -> Figure:
    """The two loss curves, each with its running mean."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    titles = ("data (no noise)", f"data + N(0, {noise_std**2:g} I)")
    for ax, y, title in zip(fig.subplots(1, 2), curves.values(), titles, strict=True):
        y = np.asarray(y)
        ax.plot(np.arange(1, y.size + 1), y, lw=0.4, alpha=0.5, label="loss")
        w = max(y.size // 50, 1)
        if y.size >= w:
            smooth = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(np.arange(w, y.size + 1), smooth, color="tab:red", label=f"mean of {w}")
        ax.set_title(f"sliced score matching, {title}", fontsize=10)
        ax.set(xlabel="training step", ylabel="loss")
        ax.legend(fontsize=8)
    return fig


def run_fig1(
    out_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    device: str = "cpu",
    steps: int = 8000,
    batch_size: int = 128,
    lr: float = 1e-3,
    noise_std: float = 0.01,
) -> dict[str, Any]:
    """Fig. 1: sliced score matching on data without and with a little Gaussian noise.

    Data: sklearn's 8x8 digits (1,797 images, pixels in {0, 1/16, ..., 1}, three pixels always
    0). They have no density in R^64, so the score matching objective is unbounded below: the
    network can make its score ever steeper across the data and the loss diverges. With
    N(0, noise_std^2 I) noise the data have a smooth density and the objective a finite
    minimum. Both runs use the same network (unconditional ScoreMLP, 2 hidden layers of 256,
    softplus), initialisation, minibatches and projections; the loss is SSM-VR with one
    Gaussian projection. As a yardstick the JSON holds the objective of the best Gaussian
    score model (``gaussian_model_reference``): -inf (null) without noise, finite with it.

    Args:
        out_dir: Folder for ``fig1.png`` and ``fig1.json`` (created if missing).
        seed: Seed of the minibatches, the noise, the projections and the initialisation.
        quick: Train for 200 steps only.
        progress: Show tqdm progress bars.
        device: Torch device for training.
        steps: Adam steps per run.
        batch_size: Images per step.
        lr: Adam learning rate.
        noise_std: Standard deviation of the perturbation (the paper: 0.01, variance 1e-4).

    Returns:
        The numbers written to ``fig1.json``.
    """
    from sklearn.datasets import load_digits

    out, start = _out_dir(out_dir), time.perf_counter()
    steps = min(steps, 200) if quick else steps
    data_x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)
    runs: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    with _one_thread():
        xs = data_x.to(device)
        for name, noise in (("unperturbed", 0.0), ("perturbed", noise_std)):
            desc = f"fig1 {name}"
            losses, bad = _ssm_run(xs, noise, seed, device, steps, batch_size, lr, desc, progress)
            curves[name] = losses
            runs[name] = {
                "noise_std": noise,
                "non_finite_loss_at_step": bad,
                "gaussian_model_reference": _gaussian_reference(data_x, noise),
                **_curve_stats(losses),
            }
    un, pe = runs["unperturbed"], runs["perturbed"]
    ratio = {
        f"{key}_ratio": un[key] / pe[key] if pe.get(key) and key in un else None
        for key in ("final_loss", "relative_std_last20", "detrended_std_last20")
    }
    data = {
        "figure": "fig1",
        "description": "sliced score matching loss on 8x8 digits (64-D) without and with "
        "N(0, noise_std^2 I) noise; fluctuation measured on the last 20% of the steps; "
        "ratios are unperturbed / perturbed",
        "runs": runs,
        "comparison": ratio,
        "data": {
            **{"name": "sklearn digits / 16", "n": int(data_x.shape[0]), "dim": 64},
            "constant_pixels": int((data_x.std(0) == 0).sum()),
        },
        "config": {
            **{"seed": seed, "quick": quick, "steps": steps, "batch_size": batch_size, "lr": lr},
            "device": device,
            "model": "ScoreMLP(dim=64, hidden=256, depth=2, softplus, unconditional)",
            "loss": "sliced_score_matching_loss(variance_reduction=True), 1 Gaussian projection",
        },
    }
    fig = _fig1_figure(curves, noise_std)
    return _finish(out, "fig1", fig, data, start)


# ------------------------------------------------------------------------------ all
