"""The paper's illustrative experiments (Song & Ermon 2019, Figs. 1-3) on small data.

Each ``run_figN(out_dir, ...)`` writes ``figN.png`` and ``figN.json`` (the numbers behind the
figure) into ``out_dir`` and returns those numbers as a dict; :func:`run_all` runs all three
and writes ``summary.json``. Every run is seeded (same seed, same numbers), uses one CPU
thread (the networks are tiny: one thread is the fastest on CPU and leaves the other cores
free) and takes at most about two minutes; ``quick=True`` gives a seconds-long version.

* Fig. 1 (manifold hypothesis): sliced score matching of an unconditional score network on
  sklearn's 8x8 digits (64-D, 17 grey levels, 3 pixels always 0: the data have no density in
  R^64) versus the same data plus N(0, 1e-4 I) noise.
* Fig. 2 (low data density): true versus learned score fields of the paper's mixture and the
  squared error of the estimates in high- versus low-density regions.
* Fig. 3 (mixing): exact samples, Langevin dynamics and annealed Langevin dynamics with the
  exact scores of the paper's mixture, and the fraction of samples in each mode.

Annealed Langevin settings (Figs. 2-3): sigma geometric from 20 to 1 over 10 levels and T = 100
steps per level, as in the paper, with eps = 0.2 in the paper's step convention
(see :mod:`ncsn.schedules`), i.e. ``step_lr = 0.1`` in the official code's convention. With
eps = 0.1 the weight-0.2 mode comes out about 0.02 too heavy (measured with 20,000 samples):
T = 100 steps do not quite finish moving mass between modes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from tqdm.auto import tqdm

from ncsn.losses import anneal_dsm_loss, sliced_score_matching_loss
from ncsn.sampling import annealed_langevin_dynamics, langevin_dynamics
from ncsn.schedules import STEP_CONVENTION
from ncsn.toy._common import (
    BOX,
    _finish,
    _fractions,
    _gen,
    _new_model,
    _one_thread,
    _out_dir,
    _save_json,
    _sigmas,
    _train,
    _uniform_box,
)
from ncsn.toy.distributions import GaussianMixture, paper_mixture
from ncsn.toy.manifold import run_fig1

__all__ = ["run_fig1", "run_fig2", "run_fig3", "run_all", "FIGURES"]

ALD_T, ALD_EPS = 100, 0.2  # annealed Langevin: steps per level, eps (see the module doc)
LANGEVIN_STEPS, LANGEVIN_STEP = 1000, 0.1  # plain Langevin dynamics
N_SAMPLES = 1280
Runner = Callable[..., dict[str, Any]]


# ------------------------------------------------------------------------------ Fig. 3


def _fig3_samples(mix, sigmas, gen, n_samples, n_plain, device, progress) -> dict[str, Any]:
    """Exact samples, Langevin dynamics and annealed Langevin dynamics with exact scores."""
    total = n_plain + ALD_T * len(sigmas)
    with _one_thread(), tqdm(total=total, desc="fig3 sampling", disable=not progress) as bar:

        def tick(_: dict) -> None:
            bar.update()

        kw = {"generator": gen, "callback": tick}
        samples = {"exact": mix.sample(n_samples, gen, device=device)}
        x0 = _uniform_box(n_samples, gen, device)
        samples["langevin"] = langevin_dynamics(mix.score_fn, x0, LANGEVIN_STEP, n_plain, **kw)
        x0 = _uniform_box(n_samples, gen, device)
        samples["annealed_langevin"] = annealed_langevin_dynamics(
            mix.score_fn, x0, sigmas, n_steps_each=ALD_T, eps=ALD_EPS, **kw
        )
    return samples


def _mode_report(mix: GaussianMixture, x: torch.Tensor) -> dict[str, Any]:
    """Fraction of samples per mode, the small mode's error and the std within each mode."""
    comp = mix.nearest_component(x)
    fr = _fractions(mix, x)
    return {
        "mode_fractions": fr,
        "abs_error_small_mode": round(abs(fr[0] - float(mix.weights[0])), 4),
        "per_mode_std": [
            round(float(x[comp == k].std(0).mean()), 4) if (comp == k).sum() > 1 else None
            for k in range(mix.num_components)
        ],
    }


def _fig3_figure(samples: dict[str, torch.Tensor], methods: dict[str, Any]) -> Figure:
    """One scatter panel per sampler, titled with its mode fractions."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    titles = ("(a) exact sampling", "(b) Langevin dynamics", "(c) annealed Langevin dynamics")
    for ax, (name, x), title in zip(fig.subplots(1, 3), samples.items(), titles, strict=True):
        pts, fr = x.cpu().numpy(), methods[name]["mode_fractions"]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, rasterized=True)
        ax.set_title(f"{title}\nmode fractions {fr[0]:.3f} / {fr[1]:.3f}", fontsize=10)
        ax.set(xlim=(-BOX - 2, BOX + 2), ylim=(-BOX - 2, BOX + 2), aspect="equal")
    return fig


def run_fig3(
    out_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    device: str = "cpu",
    n_samples: int = N_SAMPLES,
) -> dict[str, Any]:
    """Fig. 3: exact sampling vs Langevin vs annealed Langevin, all with exact scores.

    Data: the paper's mixture ``1/5 N((-5,-5), I) + 4/5 N((5,5), I)``. Langevin dynamics (1000
    steps of 0.1) uses the exact data score; annealed Langevin uses the exact scores of the
    mixture perturbed at each sigma (module doc). Both start uniform on [-8, 8]^2. A sample
    belongs to the mode of its nearest mean. The annealed samples follow the mixture perturbed
    at sigma_L = 1, so their modes have std sqrt(2) (reported as ``per_mode_std``).

    Args:
        out_dir: Folder for ``fig3.png`` and ``fig3.json`` (created if missing).
        seed: Seed of every random draw.
        quick: 300 plain Langevin steps instead of 1000 (already converged: the chain
            contracts by 0.95 per step); the rest is cheap and unchanged.
        progress: Show a tqdm progress bar.
        device: Torch device for the sampling.
        n_samples: Samples per method.

    Returns:
        The numbers written to ``fig3.json``.
    """
    out, start = _out_dir(out_dir), time.perf_counter()
    n_plain = 300 if quick else LANGEVIN_STEPS
    mix, sigmas, gen = paper_mixture(), _sigmas(device), _gen(seed)
    samples = _fig3_samples(mix, sigmas, gen, n_samples, n_plain, device, progress)
    methods = {name: _mode_report(mix, x.cpu()) for name, x in samples.items()}
    w0 = float(mix.weights[0])
    data = {
        "figure": "fig3",
        "description": "fraction of samples nearest to mode (-5,-5) [weight 0.2] and (5,5) "
        "[weight 0.8] for each sampler, all using exact scores",
        "true_weights": [round(float(w), 4) for w in mix.weights],
        "binomial_std_error": round(math.sqrt(w0 * (1 - w0) / n_samples), 4),
        "methods": methods,
        "config": {
            **{"seed": seed, "quick": quick, "n_samples": n_samples, "device": device},
            **{"init": f"uniform [-{BOX:g}, {BOX:g}]^2", "langevin_steps": n_plain},
            **{"langevin_step_size": LANGEVIN_STEP, "n_steps_each": ALD_T, "eps": ALD_EPS},
            "sigmas": sigmas.tolist(),
            "step_convention": STEP_CONVENTION,
        },
    }
    fig = _fig3_figure(samples, methods)
    return _finish(out, "fig3", fig, data, start)


# ------------------------------------------------------------------------------ Fig. 2


def _grid(n: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    ticks = torch.linspace(-BOX, BOX, n, dtype=torch.float64)
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), gx.numpy(), gy.numpy()


def _score_errors(est: torch.Tensor, mix: GaussianMixture, pts: torch.Tensor) -> dict[str, Any]:
    """Squared errors ``||est - grad log p||^2`` on grid points, high vs low density.

    High density: within 2 standard deviations of a component mean; low density: the other
    grid points. Each region reports the plain (area-weighted) mean over its grid points;
    ``density_weighted_mse`` weights all grid points by p(x) (what the training loss sees).
    """
    true = mix.score(pts)
    err = ((est.double() - true) ** 2).sum(dim=1)
    high = torch.cdist(pts, mix.means).min(dim=1).values <= 2.0 * mix.stds.max()
    dens = mix.log_prob(pts).exp()
    hi = float(err[high].mean()) if high.any() else math.nan
    lo = float(err[~high].mean()) if (~high).any() else math.nan
    return {
        "high_density_mse": hi,
        "low_density_mse": lo,
        "low_over_high": lo / hi,
        "high_density_area_fraction": float(high.double().mean()),
        "grid_mse": float(err.mean()),
        "density_weighted_mse": float((err * dens).sum() / dens.sum()),
        "mean_true_score_norm2_high": float((true[high] ** 2).sum(1).mean()) if high.any() else 0,
    }


def _field_panel(ax, mix, field, title: str, scale: float, err: dict | None = None) -> None:
    """Density (orange), a 21 x 21 quiver of ``field`` and the high-density circles."""
    if err is not None:
        title += (
            f"\nMSE high density {err['high_density_mse']:.3g}, low {err['low_density_mse']:.3g}"
        )
    pts, gx, gy = _grid(200)
    dens = mix.log_prob(pts).exp().reshape(gx.shape).numpy()
    ax.pcolormesh(gx, gy, dens, cmap="Oranges", shading="auto", rasterized=True)
    pts, gx, gy = _grid(21)
    vec = field(pts).double().cpu().numpy()
    u, v = vec[:, 0].reshape(gx.shape), vec[:, 1].reshape(gx.shape)
    ax.quiver(gx, gy, u, v, angles="xy", scale_units="xy", scale=scale, width=0.004)
    for mean in mix.means.numpy():
        ax.add_patch(Circle(mean, 2 * float(mix.stds.max()), fill=False, ls="--", color="red"))
    ax.set_title(title, fontsize=10)
    ax.set(xlim=(-BOX, BOX), ylim=(-BOX, BOX), aspect="equal")


def _fig2_train(mix, sigmas, gen, seed, device, steps, batch_size, lr, progress) -> tuple:
    """Train the SSM and the annealed-DSM ScoreMLPs on fresh mixture samples.

    Returns:
        ``(ssm_model, dsm_model, ssm_losses, dsm_losses)``.
    """
    ssm = _new_model(seed, device, dim=2, sigmas=None, scale_by_sigma=False)
    dsm = _new_model(seed + 1, device, dim=2, sigmas=sigmas.cpu(), scale_by_sigma=True)

    def ssm_loss() -> torch.Tensor:
        x = mix.sample(batch_size, gen, device=device)
        return sliced_score_matching_loss(ssm, x, variance_reduction=True, generator=gen)

    def dsm_loss() -> torch.Tensor:
        x = mix.sample(batch_size, gen, device=device)
        return anneal_dsm_loss(dsm, x, sigmas, generator=gen).loss

    ssm_losses, _ = _train(ssm_loss, ssm, steps, lr=lr, desc="fig2 SSM", progress=progress)
    dsm_losses, _ = _train(dsm_loss, dsm, steps, lr=lr, desc="fig2 DSM", progress=progress)
    return ssm, dsm, ssm_losses, dsm_losses


def _learned_field(model, device: str, sigma: float | None = None) -> Callable:
    """``p -> s_theta(p)`` (or ``s_theta(p, sigma)``) on float64 grid points, without grad."""

    @torch.no_grad()
    def field(p: torch.Tensor) -> torch.Tensor:
        return model(p.float().to(device), None if sigma is None else torch.tensor(sigma)).cpu()

    return field


def _fig2_figure(mix, sl: float, fields: tuple, ssm_err: dict, dsm_err: dict) -> Figure:
    """Exact vs learned score fields: the data (top) and at the smallest sigma (bottom)."""
    ssm_field, dsm_field = fields
    pm = mix.perturbed(sl)
    scale = 1.1 * float(mix.score(_grid(21)[0]).norm(dim=1).max()) / (2 * BOX / 20)
    fig = Figure(figsize=(10, 10.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    _field_panel(axes[0], mix, mix.score, "data score  grad log p(x)  (exact)", scale)
    _field_panel(axes[1], mix, ssm_field, "sliced SM estimate s(x)", scale, ssm_err)
    _field_panel(axes[2], pm, pm.score, f"score of p perturbed at sigma={sl:g} (exact)", scale)
    head = f"annealed DSM estimate s(x, sigma={sl:g})"
    _field_panel(axes[3], pm, dsm_field, head, scale, dsm_err)
    fig.suptitle("density: orange (darker = higher); scores: arrows; dashed: 2-std regions")
    return fig


def run_fig2(
    out_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    device: str = "cpu",
    steps: int = 5000,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> dict[str, Any]:
    """Fig. 2: score estimates are accurate only where the data density is high.

    Two ScoreMLPs (3 hidden layers of 128, SiLU) learn the paper's mixture from fresh samples
    at every step: (i) unconditional, by sliced score matching (SSM-VR, one Gaussian
    projection) on the unperturbed data, like the paper's Fig. 2; (ii) noise-conditional, by
    annealed denoising score matching over the 10 sigmas of the module doc. Errors are
    measured on a 101 x 101 grid over [-8, 8]^2 against the exact score each model targets:
    the data score for (i), the sigma-perturbed mixture's score for (ii) at every level (the
    high-density radius grows with sigma: 2 sqrt(1 + sigma^2)). Both models then sample as in
    Fig. 3 (Langevin with (i), annealed Langevin with (ii)).

    Args:
        out_dir: Folder for ``fig2.png`` and ``fig2.json`` (created if missing).
        seed: Seed of the data, the projections and the model initialisation.
        quick: Train for 300 steps only.
        progress: Show tqdm progress bars.
        device: Torch device for training and sampling.
        steps: Adam steps per model.
        batch_size: Samples per step.
        lr: Adam learning rate.

    Returns:
        The numbers written to ``fig2.json``.
    """
    out, start = _out_dir(out_dir), time.perf_counter()
    steps = min(steps, 300) if quick else steps
    mix, sigmas, gen = paper_mixture(), _sigmas(device), _gen(seed)
    with _one_thread():
        ssm, dsm, ssm_losses, dsm_losses = _fig2_train(
            mix, sigmas, gen, seed, device, steps, batch_size, lr, progress
        )
        pts = _grid(101)[0]
        ssm_err = _score_errors(_learned_field(ssm, device)(pts), mix, pts)
        per_level = [
            {
                "sigma": s,
                **_score_errors(_learned_field(dsm, device, s)(pts), mix.perturbed(s), pts),
            }
            for s in sigmas.tolist()
        ]
        x0 = _uniform_box(N_SAMPLES, gen, device)
        plain = langevin_dynamics(ssm, x0, LANGEVIN_STEP, LANGEVIN_STEPS, generator=gen)
        x0 = _uniform_box(N_SAMPLES, gen, device)
        annealed = annealed_langevin_dynamics(
            dsm, x0, sigmas, n_steps_each=ALD_T, eps=ALD_EPS, generator=gen
        )
    data = {
        "figure": "fig2",
        "description": "mean squared score error ||s_theta - grad log p||^2 on a 101x101 grid "
        "over [-8,8]^2; high density = within 2 std of a mode, low density = the rest (each an "
        "area-weighted mean); density_weighted_mse = p(x)-weighted mean over the grid",
        "errors": {"ssm_data_score": ssm_err, "dsm_smallest_sigma": per_level[-1]},
        "dsm_per_level": per_level,
        "learned_sampling_mode_fractions": {
            "langevin_with_ssm_score": _fractions(mix, plain),
            "annealed_langevin_with_dsm_score": _fractions(mix, annealed),
            "true_weights": [round(float(w), 4) for w in mix.weights],
        },
        "final_loss": {
            "ssm": float(np.mean(ssm_losses[-100:])),
            "anneal_dsm": float(np.mean(dsm_losses[-100:])),
        },
        "config": {
            **{"seed": seed, "quick": quick, "steps": steps, "batch_size": batch_size, "lr": lr},
            **{"device": device, "model": "ScoreMLP(dim=2, hidden=128, depth=3)"},
            "ssm": "sliced_score_matching_loss, variance-reduced, unperturbed data",
            "dsm": "anneal_dsm_loss, lambda(sigma) = sigma^2",
            "sigmas": sigmas.tolist(),
        },
    }
    fields = (_learned_field(ssm, device), _learned_field(dsm, device, float(sigmas[-1])))
    fig = _fig2_figure(mix, float(sigmas[-1]), fields, ssm_err, per_level[-1])
    return _finish(out, "fig2", fig, data, start)


FIGURES: dict[str, Runner] = {"fig1": run_fig1, "fig2": run_fig2, "fig3": run_fig3}


def run_all(
    out_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run Figs. 1-3 into ``out_dir`` and write ``summary.json`` with their key numbers.

    Args:
        out_dir: Folder for all outputs (created if missing).
        seed: Seed handed to every experiment.
        quick: Tiny versions (seconds).
        progress: Show tqdm progress bars.
        device: Torch device.

    Returns:
        The summary (also written to ``summary.json``); the full numbers are in ``figN.json``.
    """
    out = _out_dir(out_dir)
    kw = {"seed": seed, "quick": quick, "progress": progress, "device": device}
    res = {name: fn(out, **kw) for name, fn in FIGURES.items()}
    keys = ("final_loss", "relative_std_last20", "detrended_std_last20", "gaussian_model_reference")
    f2 = res["fig2"]
    summary = {
        "fig1": {name: {k: r.get(k) for k in keys} for name, r in res["fig1"]["runs"].items()},
        "fig2": {
            "ssm_low_over_high": f2["errors"]["ssm_data_score"]["low_over_high"],
            "dsm_low_over_high": f2["errors"]["dsm_smallest_sigma"]["low_over_high"],
            "learned_sampling_mode_fractions": f2["learned_sampling_mode_fractions"],
        },
        "fig3": {name: m["mode_fractions"] for name, m in res["fig3"]["methods"].items()},
        "seconds": {name: r["seconds"] for name, r in res.items()},
        "config": kw,
    }
    return _save_json(out / "summary.json", summary)
