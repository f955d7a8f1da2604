"""ncsn's NCSN / NCSNv2 with the authors' weights give the authors' outputs.

``../shared/official-refs`` holds four networks written by the official code (small width,
every weight perturbed so that a wrong mapping shows) with the official ``model(x, labels)``
outputs on fixed inputs. A wrong pooling, norm formula, resize mode, input scaling, layer
order or key mapping changes the outputs by far more than the 1e-5 allowed here.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import OFFICIAL_FOLDERS
from ncsn import load_official
from ncsn.models import count_parameters

RTOL = 1e-5


def _assert_reproduces(out: torch.Tensor, expected: torch.Tensor) -> None:
    scale = expected.abs().max()
    assert (out - expected).abs().max() <= RTOL * scale
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=RTOL * float(scale))


@pytest.mark.parametrize("folder", OFFICIAL_FOLDERS)
def test_imported_network_reproduces_official_output(official_refs, folder):
    ref = load_file(official_refs / folder / "expected.safetensors")
    model, _ = load_official(official_refs / folder, ema=False)
    sigma = model.sigmas[ref["labels"]]  # the level's sigma: v1 maps it back to the index
    with torch.no_grad():
        _assert_reproduces(model(ref["x"], sigma), ref["out"])
    if "sigmas" in ref:  # v2: the official noise levels, which the network divides by
        torch.testing.assert_close(model.sigmas, ref["sigmas"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("folder", [f for f in OFFICIAL_FOLDERS if f.startswith("ncsnv2")])
def test_imported_ema_weights_reproduce_official_ema_output(official_refs, folder):
    ref = load_file(official_refs / folder / "expected.safetensors")
    model, _ = load_official(official_refs / folder)  # ema=True is the default
    with torch.no_grad():
        _assert_reproduces(model(ref["x"], model.sigmas[ref["labels"]]), ref["out_ema"])
        assert not torch.allclose(ref["out"], ref["out_ema"])  # the two really differ


@pytest.mark.parametrize("folder", ["ncsn_v1_mnist", "ncsn_v1_cifar10"])
def test_v1_level_index_input_matches_official(official_refs, folder):
    """The official v1 network takes the level index; ncsn's accepts it as ``labels``."""
    ref = load_file(official_refs / folder / "expected.safetensors")
    model, _ = load_official(official_refs / folder)
    with torch.no_grad():
        _assert_reproduces(model(ref["x"], 0.0, labels=ref["labels"]), ref["out"])


@pytest.mark.parametrize("folder", OFFICIAL_FOLDERS)
def test_parameter_count_equals_official(official_refs, folder):
    meta = json.loads((official_refs / folder / "meta.json").read_text())
    model, _ = load_official(official_refs / folder)
    assert count_parameters(model) == meta["params"]
