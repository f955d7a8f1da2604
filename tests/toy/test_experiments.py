"""The toy experiments (Figs. 1-3): quick runs write valid outputs and show the paper's effects."""

import json
import math
import time

import numpy as np
import pytest

from ncsn.errors import NCSNError
from ncsn.toy.experiments import FIGURES, run_all, run_fig1, run_fig2, run_fig3

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strict_json(path):
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_all")
    start = time.perf_counter()
    summary = run_all(out, quick=True, progress=False)
    return out, summary, time.perf_counter() - start


@pytest.fixture(scope="module")
def fig3(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig3") / "a" / "b"  # run_fig3 creates missing folders
    return out, run_fig3(out, quick=True, progress=False)


def test_run_all_writes_every_png_and_strict_json(quick_all):
    out, summary, elapsed = quick_all
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        data = _strict_json(out / f"{name}.json")
        assert data["figure"] == name and data["config"]["quick"] is True
        assert summary["seconds"][name] == data["seconds"] > 0
    assert _strict_json(out / "summary.json") == summary
    assert set(summary["seconds"]) == set(FIGURES)
    # each figure times its own run (seconds, rounded to 0.01): together within the wall time
    assert sum(summary["seconds"].values()) <= elapsed + 0.03


def test_fig3_annealed_langevin_recovers_the_mode_weights(fig3):
    # With n = 1280 samples the binomial std of the small mode's fraction is
    # sqrt(0.2 * 0.8 / 1280) = 0.011, so +-0.05 is about 4.5 std: room for the sampler's
    # discretisation bias (about +0.01, measured with 20,000 samples) and chance.
    _, data = fig3
    methods = data["methods"]
    assert data["config"]["n_samples"] >= 1000
    assert abs(methods["annealed_langevin"]["mode_fractions"][0] - 0.2) < 0.05
    assert abs(methods["exact"]["mode_fractions"][0] - 0.2) < 0.05
    # Plain Langevin cannot move mass between modes 14 apart: a uniform start on [-8, 8]^2
    # splits about in half (the basin boundary is near x + y = 0).
    assert methods["langevin"]["mode_fractions"][0] > 0.35
    for m in methods.values():
        assert math.isclose(sum(m["mode_fractions"]), 1.0, abs_tol=1e-3)


def test_fig3_return_value_matches_its_json_and_is_reproducible(fig3, tmp_path):
    out, data = fig3
    assert _strict_json(out / "fig3.json") == data
    assert (out / "fig3.png").read_bytes()[:8] == PNG_MAGIC
    again = run_fig3(tmp_path, quick=True, progress=False)
    assert again["methods"] == data["methods"]


def test_fig3_annealed_samples_have_the_sigma_l_perturbed_spread(fig3):
    # At sigma_L = 1 each mode has std sqrt(1 + 1) = 1.41; the exact samples have std 1.
    _, data = fig3
    assert all(0.8 < s < 1.2 for s in data["methods"]["exact"]["per_mode_std"])
    assert all(1.2 < s < 1.7 for s in data["methods"]["annealed_langevin"]["per_mode_std"])


def test_fig2_score_error_is_larger_in_low_density_regions(quick_all):
    out, summary, _ = quick_all
    data = _strict_json(out / "fig2.json")
    ssm = data["errors"]["ssm_data_score"]
    assert ssm["low_density_mse"] > 5 * ssm["high_density_mse"]
    assert summary["fig2"]["ssm_low_over_high"] == ssm["low_over_high"]
    assert len(data["dsm_per_level"]) == len(data["config"]["sigmas"]) == 10
    # At the largest sigma every grid point is within 2 std of a mode: no low-density region.
    assert data["dsm_per_level"][0]["low_density_mse"] is None


def test_fig1_reports_curves_and_the_gaussian_yardstick(quick_all):
    out, _, _ = quick_all
    data = _strict_json(out / "fig1.json")
    un, pe = data["runs"]["unperturbed"], data["runs"]["perturbed"]
    assert data["data"]["constant_pixels"] == 3 and data["data"]["dim"] == 64
    assert un["steps_run"] == pe["steps_run"] == data["config"]["steps"]
    assert len(un["curve_mean"]) == len(un["curve_step"]) <= 200
    # Singular covariance without noise: the best Gaussian objective is -inf (null in JSON).
    assert un["gaussian_model_reference"] is None
    assert pe["gaussian_model_reference"] < 0
    # quick: 200 steps in 200 curve points, so the curve is the loss of every step and the
    # statistics of its last 20 % (40 steps) can be recomputed from the JSON
    for run in (un, pe):
        assert run["curve_step"] == list(range(1, 201))
        loss = np.array(run["curve_mean"])
        tail = loss[-40:]
        assert run["final_loss"] == pytest.approx(loss[-2:].mean())
        assert run["std_last20"] == pytest.approx(tail.std()) and tail.std() > 0
        assert run["relative_std_last20"] == pytest.approx(tail.std() / abs(tail.mean()))
        slope = np.polyfit(np.arange(40), tail, 1)[0]
        assert run["slope_last20_per_1k_steps"] == pytest.approx(1000 * slope)


def test_output_folder_that_is_a_file_is_an_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NCSNError, match="is a file"):
        run_fig3(f, quick=True, progress=False)


def test_output_folder_is_created(fig3):
    out, _ = fig3
    assert out.parts[-2:] == ("a", "b")
    assert (out / "fig3.png").exists() and (out / "fig3.json").exists()


@pytest.mark.slow
def test_fig2_learned_scores_and_annealed_sampling(tmp_path):
    # 1,000 of the figure's 5,000 training steps already show every effect (measured on this
    # seed: error ratios 560 and 120, small-mode fraction 0.235; 0.171 after 2,000 steps)
    data = run_fig2(tmp_path, progress=False, steps=1000)
    assert data["config"]["steps"] == 1000
    assert data["errors"]["ssm_data_score"]["low_over_high"] > 10
    assert data["errors"]["dsm_smallest_sigma"]["low_over_high"] > 10
    fr = data["learned_sampling_mode_fractions"]["annealed_langevin_with_dsm_score"]
    assert abs(fr[0] - 0.2) < 0.06


def _window_slopes(run):
    """Slopes of the logged loss curve over its second-to-last and last fifths of the steps."""
    step, loss = np.array(run["curve_step"]), np.array(run["curve_mean"])
    fifth = step[-1] / 5
    prev, last = (step > step[-1] - 2 * fifth) & (step <= step[-1] - fifth), step > step[-1] - fifth
    return [np.polyfit(step[w], loss[w], 1)[0] for w in (prev, last)]


@pytest.mark.slow
def test_fig1_unperturbed_loss_diverges_perturbed_levels_off(tmp_path):
    # 2,500 of the figure's 8,000 steps (measured on this seed: final losses -200,000 and
    # -34,000, slopes of the last fifth -186 and -11 per step; at 8,000 steps the ratios grow)
    data = run_fig1(tmp_path, progress=False, steps=2500)
    un, pe = data["runs"]["unperturbed"], data["runs"]["perturbed"]
    assert un["steps_run"] == pe["steps_run"] == 2500 and un["non_finite_loss_at_step"] is None
    # No density: the loss runs away far below the noisy run's, ...
    assert un["final_loss"] < 4 * pe["final_loss"] < 0
    assert abs(pe["slope_last20_per_1k_steps"]) < abs(un["slope_last20_per_1k_steps"]) / 10
    # ... ever faster, while the noisy run's descent slows down.
    un_prev, un_last = _window_slopes(un)
    pe_prev, pe_last = _window_slopes(pe)
    assert un_last < 1.2 * un_prev < 0
    assert pe_prev < pe_last < 0
