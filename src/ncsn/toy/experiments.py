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
(``alpha_i = eps sigma_i^2/sigma_L^2``, see :mod:`ncsn.sampling`), i.e. ``step_lr = 0.1`` in
the official code's convention. With eps = 0.1 the weight-0.2 mode comes out about 0.02 too heavy
(measured with 20,000 samples): T = 100 steps do not quite finish moving mass between modes.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from tqdm.auto import tqdm

from ncsn.errors import NCSNError
from ncsn.io import atomic_write
from ncsn.losses import anneal_dsm_loss, sliced_score_matching_loss
from ncsn.models.mlp import ScoreMLP
from ncsn.rng import randint, randn
from ncsn.sampling import annealed_langevin_dynamics, langevin_dynamics
from ncsn.schedules import geometric_sigmas
from ncsn.toy.distributions import GaussianMixture, paper_mixture

__all__ = ["run_fig1", "run_fig2", "run_fig3", "run_all", "FIGURES"]

BOX = 8.0  # grids, plots and the Langevin initialisation cover [-BOX, BOX]^2
SIGMAS = (20.0, 1.0, 10)  # sigma_1, sigma_L, L of the annealed samplers and the DSM model
ALD_T, ALD_EPS = 100, 0.2  # annealed Langevin: steps per level, eps (see the module doc)
LANGEVIN_STEPS, LANGEVIN_STEP = 1000, 0.1  # plain Langevin dynamics
N_SAMPLES = 1280
FIG1_NET = dict(dim=64, hidden=256, depth=2, sigmas=None, scale_by_sigma=False, embed_dim=0)
Runner = Callable[..., dict[str, Any]]


# ------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _out_dir(out_dir: str | Path) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise NCSNError(f"output folder {path} is a file; give a folder name")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _finite(obj: Any) -> Any:
    """Recursively replace non-finite floats by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _finish(out: Path, name: str, fig: Figure, data: dict[str, Any], start: float) -> dict:
    """Stamp the run time, then write ``name.png`` and ``name.json`` atomically."""
    data["seconds"] = round(time.perf_counter() - start, 2)
    with atomic_write(out / f"{name}.png") as f:
        fig.savefig(f, format="png", dpi=110)
    return _save_json(out / f"{name}.json", data)


def _save_json(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` (non-finite floats as null) atomically; return what was written."""
    data = _finite(data)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
    return data


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _new_model(seed: int, device: str, **kwargs: Any) -> ScoreMLP:
    """A ScoreMLP initialised from ``seed`` without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = ScoreMLP(**kwargs)
    return model.to(device)


def _uniform_box(n: int, generator: torch.Generator, device: str) -> torch.Tensor:
    return ((torch.rand(n, 2, generator=generator) * 2 - 1) * BOX).to(device)


def _fractions(mix: GaussianMixture, x: torch.Tensor) -> list[float]:
    return [round(float(f), 4) for f in mix.mode_fractions(x.cpu())]


def _sigmas(device: str) -> torch.Tensor:
    return geometric_sigmas(SIGMAS[0], SIGMAS[1], SIGMAS[2], device=device)


def _train(
    loss_fn: Callable[[], torch.Tensor],
    model: torch.nn.Module,
    steps: int,
    *,
    lr: float,
    desc: str,
    progress: bool,
) -> tuple[list[float], int | None]:
    """Adam on ``loss_fn()``; returns the losses and the step of a non-finite loss (or None)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    with tqdm(range(steps), desc=desc, disable=not progress, leave=False) as bar:
        for step in bar:
            loss = loss_fn()
            value = float(loss.detach())
            if not math.isfinite(value):
                return losses, step
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(value)
            if step % 100 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
    return losses, None


# ------------------------------------------------------------------------------ Fig. 3


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
            mix.score_fn, x0, sigmas, ALD_T, ALD_EPS, **kw
        )
    methods: dict[str, Any] = {}
    for name, x in samples.items():
        x = x.cpu()
        comp = mix.nearest_component(x)
        fr = _fractions(mix, x)
        methods[name] = {
            "mode_fractions": fr,
            "abs_error_small_mode": round(abs(fr[0] - float(mix.weights[0])), 4),
            "per_mode_std": [
                round(float(x[comp == k].std(0).mean()), 4) if (comp == k).sum() > 1 else None
                for k in range(mix.num_components)
            ],
        }
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
            "step_convention": "x + alpha/2 s + sqrt(alpha) z, alpha_i = eps sigma_i^2/sigma_L^2",
        },
    }
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    titles = ("(a) exact sampling", "(b) Langevin dynamics", "(c) annealed Langevin dynamics")
    for ax, (name, x), title in zip(fig.subplots(1, 3), samples.items(), titles, strict=True):
        pts, fr = x.cpu().numpy(), methods[name]["mode_fractions"]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, rasterized=True)
        ax.set_title(f"{title}\nmode fractions {fr[0]:.3f} / {fr[1]:.3f}", fontsize=10)
        ax.set(xlim=(-BOX - 2, BOX + 2), ylim=(-BOX - 2, BOX + 2), aspect="equal")
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

        @torch.no_grad()
        def ssm_field(p: torch.Tensor) -> torch.Tensor:
            return ssm(p.float().to(device), None).cpu()

        @torch.no_grad()
        def dsm_field(p: torch.Tensor, sigma: float) -> torch.Tensor:
            return dsm(p.float().to(device), torch.tensor(sigma)).cpu()

        pts = _grid(101)[0]
        ssm_err = _score_errors(ssm_field(pts), mix, pts)
        per_level = [
            {"sigma": s, **_score_errors(dsm_field(pts, s), mix.perturbed(s), pts)}
            for s in sigmas.tolist()
        ]
        x0 = _uniform_box(N_SAMPLES, gen, device)
        plain = langevin_dynamics(ssm, x0, LANGEVIN_STEP, LANGEVIN_STEPS, generator=gen)
        x0 = _uniform_box(N_SAMPLES, gen, device)
        annealed = annealed_langevin_dynamics(dsm, x0, sigmas, ALD_T, ALD_EPS, generator=gen)
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
    sl = float(sigmas[-1])
    pm = mix.perturbed(sl)
    scale = 1.1 * float(mix.score(_grid(21)[0]).norm(dim=1).max()) / (2 * BOX / 20)
    fig = Figure(figsize=(10, 10.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    _field_panel(axes[0], mix, mix.score, "data score  grad log p(x)  (exact)", scale)
    _field_panel(axes[1], mix, ssm_field, "sliced SM estimate s(x)", scale, ssm_err)
    _field_panel(axes[2], pm, pm.score, f"score of p perturbed at sigma={sl:g} (exact)", scale)
    head = f"annealed DSM estimate s(x, sigma={sl:g})"
    _field_panel(axes[3], pm, lambda p: dsm_field(p, sl), head, scale, per_level[-1])
    fig.suptitle("density: orange (darker = higher); scores: arrows; dashed: 2-std regions")
    return _finish(out, "fig2", fig, data, start)


# ------------------------------------------------------------------------------ Fig. 1


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
            model = _new_model(seed, device, activation="softplus", **FIG1_NET)
            g_batch, g_noise, g_proj = _gen(seed), _gen(seed + 1), _gen(seed + 2)

            def loss_fn(model=model, noise=noise, gens=(g_batch, g_noise, g_proj)):
                x = xs[randint(xs.shape[0], (batch_size,), xs.device, gens[0])]
                if noise > 0:
                    x = x + noise * randn(x.shape, x, gens[1])
                return sliced_score_matching_loss(
                    model, x, variance_reduction=True, generator=gens[2]
                )

            desc = f"fig1 {name}"
            losses, bad = _train(loss_fn, model, steps, lr=lr, desc=desc, progress=progress)
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
    return _finish(out, "fig1", fig, data, start)


# ------------------------------------------------------------------------------ all

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
