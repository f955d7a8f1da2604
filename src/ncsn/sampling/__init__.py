"""Samplers for noise-conditional score networks, one interface for all.

Every registered sampler is a pure function
``sampler(score_fn, x, sigmas, *, generator=None, callback=None, **options) -> x`` where
``score_fn(x, sigma) -> Tensor`` takes ``sigma`` of shape (batch,), ``sigmas`` is the
descending schedule it walks, every random draw uses ``generator`` (a list: one generator per
batch row) and ``callback(dict)`` sees every update (trajectories come through it). The
registry (:mod:`ncsn.sampling.registry`) holds each sampler's name, options and network
evaluations; :func:`sampler_sigmas` builds its schedule.

=============  =============================================================================
``ald``        annealed Langevin dynamics, the paper's Algorithm 1 (L x T evaluations)
``cas``        consistent annealed sampling (one evaluation per level)
``ancestral``  ancestral sampling of the variance-exploding chain, with eta
``pc``         predictor-corrector for the VE SDE (reverse diffusion + Langevin, snr)
``euler``      Euler on the probability-flow ODE, Karras schedule, optional churn
``heun``       Heun on the probability-flow ODE (EDM's Algorithm 2)
``dpmpp-2m``   DPM-Solver++(2M) on the probability-flow ODE
=============  =============================================================================
"""

# The import order is the registration order: ald, cas, ancestral, pc, then the ODE samplers.
# isort: off
from ncsn.sampling.langevin import (
    annealed_langevin_dynamics,
    annealed_langevin_inpainting,
    langevin_dynamics,
)
from ncsn.sampling.annealed import ancestral_sampling, consistent_annealed_sampling
from ncsn.sampling.pc import predictor_corrector
from ncsn.sampling.ode import dpmpp_2m, euler, heun

# isort: on
from ncsn.sampling.common import Callback, ScoreFn, denoiser
from ncsn.sampling.registry import (
    SAMPLERS,
    SamplerSpec,
    get_sampler,
    register_sampler,
    sampler_names,
    settings_for_nfe,
)
from ncsn.sampling.schedule import karras_sigmas, nearest_trained_levels, sampler_sigmas

__all__ = [
    "Callback",
    "SAMPLERS",
    "SamplerSpec",
    "ScoreFn",
    "ancestral_sampling",
    "annealed_langevin_dynamics",
    "annealed_langevin_inpainting",
    "consistent_annealed_sampling",
    "denoiser",
    "dpmpp_2m",
    "euler",
    "get_sampler",
    "heun",
    "karras_sigmas",
    "langevin_dynamics",
    "nearest_trained_levels",
    "predictor_corrector",
    "register_sampler",
    "sampler_names",
    "sampler_sigmas",
    "settings_for_nfe",
]
