"""The authors' file formats, read without running code: ``config.yml`` and ``checkpoint*.pth``.

The official NCSN (ermongroup/ncsn) and NCSNv2 (ermongroup/ncsnv2) code writes

- ``config.yml`` with ``yaml.dump`` of an ``argparse.Namespace``, so the file carries
  ``!!python/object:argparse.Namespace`` tags (and reads it back with the unsafe
  ``yaml.load``). :func:`read_official_yaml` reads those tags as plain mappings and refuses
  every other Python tag;
- ``checkpoint.pth`` / ``checkpoint_<step>.pth`` with ``torch.save`` of a list: NCSN
  ``[model_state, optimizer_state]``, NCSNv2 ``[model_state, optimizer_state, epoch, step]``
  plus the EMA shadow (parameters only, no ``module.`` prefix) when EMA is on. The model keys
  carry ``module.`` (the runners wrap the network in ``DataParallel``).
  :func:`read_official_checkpoint` loads it with ``torch.load(weights_only=True)``, checks
  its structure and types, and :func:`map_official_state` renames the official keys to
  ncsn's module layout, one to one, refusing any key that has no place.

See :mod:`ncsn.official` for turning these into an ncsn model, config and run folder.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ncsn.errors import CheckpointError, ConfigError
from ncsn.yamlio import BoundedSafeLoader

__all__ = [
    "OfficialState",
    "read_official_yaml",
    "read_official_checkpoint",
    "official_to_ncsn_key",
    "map_official_state",
]

MAX_CONFIG_BYTES = 1 << 20  # an official config.yml is about 2 KB
_NAMESPACE_TAG = "tag:yaml.org,2002:python/object:argparse.Namespace"


class _OfficialYamlLoader(BoundedSafeLoader):
    """ncsn's bounded safe loader (no alias bombs, no duplicate keys) plus
    ``argparse.Namespace`` read as a mapping."""


def _namespace(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            "an argparse.Namespace tag on something that is not a mapping",
            node.start_mark,
        )
    return loader.construct_mapping(node, deep=True)


def _refuse_python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"refusing the Python tag !!python/{suffix}", node.start_mark
    )


_OfficialYamlLoader.add_constructor(_NAMESPACE_TAG, _namespace)
_OfficialYamlLoader.add_multi_constructor("tag:yaml.org,2002:python/", _refuse_python_tag)


def read_official_yaml(path: str | Path) -> dict[str, Any]:
    """Read an official ``config.yml`` as nested dicts, without constructing Python objects.

    Args:
        path: The file.

    Returns:
        The config as plain data (``argparse.Namespace`` nodes become dicts).

    Raises:
        ConfigError: Missing, too large or malformed file, or any Python tag other than
            ``!!python/object:argparse.Namespace`` (named, with its line).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"official config {path} does not exist; pass --config FILE")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {size} bytes, too large for an official config.yml")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_OfficialYamlLoader)  # noqa: S506
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"cannot read {path}{where}: {problem}; only plain YAML and "
            "!!python/object:argparse.Namespace are accepted"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) YAML file") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(s), dict) for s in ("data", "model")
    ):
        raise ConfigError(
            f"{path} is not an official NCSN/NCSNv2 config: it needs 'data' and 'model' sections"
        )
    return data


@dataclass
class OfficialState:
    """What an official checkpoint holds, checked and with ``module.`` prefixes stripped.

    Attributes:
        kind: ``"ncsn"`` (v1, conditional instance norm++) or ``"ncsnv2"``.
        variant: For NCSNv2: ``"base"`` (``NCSNv2``) or ``"deeper"`` (``NCSNv2Deeper``).
        model: The model's state (official key names).
        ema: The EMA shadow (official parameter names), or ``None``.
        step: The training step recorded in the file (NCSNv2), or ``None``.
    """

    kind: str
    variant: str | None
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    step: int | None


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln]
        what = lines[0].rstrip(".") if lines else "it is not a plain tensor checkpoint"
        raise CheckpointError(
            f"refusing {path}: it holds Python objects, not only tensors ({what}); loading it "
            "would run code. Only checkpoints written by the official code are imported"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({first}); it may be truncated: "
            "download it again"
        ) from None


def _tensor_dict(obj: Any, what: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: {what} is not a non-empty dict of tensors")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: {what} has a non-tensor entry {k!r}")
        if not v.dtype.is_floating_point:
            raise CheckpointError(f"{path}: {what} entry {k!r} is {v.dtype}, not floating point")
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: {what} entry {k!r} holds NaN or infinite values")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_official_checkpoint(path: str | Path) -> OfficialState:
    """Load and check an official ``checkpoint*.pth`` without executing code.

    Raises:
        CheckpointError: Missing, empty, truncated, pickled code, or not one of the official
            list layouts (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty; download it again")
    obj = _torch_load(path)
    if not isinstance(obj, (list, tuple)) or len(obj) not in (2, 4, 5):
        raise CheckpointError(
            f"{path} is not an official checkpoint: expected a list [model, optimizer] (NCSN) "
            "or [model, optimizer, epoch, step(, ema)] (NCSNv2)"
        )
    model = _tensor_dict(obj[0], "the model state", path)
    if not isinstance(obj[1], dict):
        raise CheckpointError(f"{path}: the second item (optimizer state) is not a dict")
    kind = _kind(model, path)
    if (kind == "ncsn") != (len(obj) == 2):
        raise CheckpointError(
            f"{path}: a {kind} model state in a list of {len(obj)} items; the file mixes formats"
        )
    step = None
    if len(obj) >= 4:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in obj[2:4]):
            raise CheckpointError(f"{path}: epoch and step (items 3 and 4) are not integers")
        step = int(obj[3])
    ema = _tensor_dict(obj[4], "the EMA shadow", path) if len(obj) == 5 else None
    variant = None
    if kind == "ncsnv2":
        if any(k.startswith("res31.") for k in model):
            raise CheckpointError(
                f"{path} holds NCSNv2Deepest (FFHQ), which ncsn does not implement; "
                "NCSNv2 and NCSNv2Deeper are supported"
            )
        variant = "deeper" if any(k.startswith("res5.") for k in model) else "base"
    return OfficialState(kind, variant, model, ema, step)


def _kind(model: dict[str, torch.Tensor], path: Path) -> str:
    if "normalizer.embed.weight" in model:
        return "ncsn"
    if "normalizer.gamma" in model:
        return "ncsnv2"
    raise CheckpointError(
        f"{path} is neither an official CondRefineNetDilated (NCSN) nor an NCSNv2 network "
        "(no 'normalizer.embed.weight' or 'normalizer.gamma' key)"
    )


_RES = re.compile(r"res(\d)\.(\d)\.(normalize1|normalize2|conv1|conv2|shortcut)\.(.+)")
_RCU = re.compile(r"refine(\d)\.(?:adapt_convs\.(\d+)|output_convs)\.(\d)_(\d)_(norm|conv)\.(.+)")
_MSF_CRP = re.compile(r"refine(\d)\.(msf|crp)\.(norms|convs)\.(\d+)\.(.+)")
_ENDS = (("begin_conv.", "net.begin."), ("end_conv.", "net.end."), ("normalizer.", "net.end_norm."))


def official_to_ncsn_key(key: str) -> str | None:
    """The ncsn name of an official key (``module.`` already stripped), or ``None``.

    The official RCU blocks name their layers ``<unit>_<stage>_conv`` (1-based, two stages);
    ncsn keeps them in one list, index ``(unit - 1) * 2 + stage - 1``. Residual stage ``resN``
    is ``net.res[N - 1]`` and ``refineN`` is ``net.refine[N - 1]``.
    """
    if key == "sigmas":
        return key
    for official, ours in _ENDS:
        if key.startswith(official):
            return ours + key[len(official) :]
    if m := _RES.fullmatch(key):
        layer = {"normalize1": "norm1", "normalize2": "norm2"}.get(m[3], m[3])
        return f"net.res.{int(m[1]) - 1}.{m[2]}.{layer}.{m[4]}"
    if m := _RCU.fullmatch(key):
        where = f"adapt.{m[2]}" if m[2] is not None else "output"
        index = (int(m[3]) - 1) * 2 + int(m[4]) - 1
        return f"net.refine.{int(m[1]) - 1}.{where}.{m[5]}s.{index}.{m[6]}"
    if m := _MSF_CRP.fullmatch(key):
        return f"net.refine.{int(m[1]) - 1}.{m[2]}.{m[3]}.{m[4]}.{m[5]}"
    return None


def map_official_state(
    official: dict[str, torch.Tensor], own: dict[str, torch.Tensor], where: str
) -> dict[str, torch.Tensor]:
    """Rename an official state to ncsn's keys, strictly.

    Args:
        official: Official keys -> tensors (no ``module.`` prefix).
        own: The ncsn model's ``state_dict()`` (gives the expected keys and shapes).
        where: What to name in messages (file and part).

    Returns:
        A full ncsn state dict; ``sigmas`` comes from ``own`` when the official state has
        none (NCSN v1 and the NCSNv2 EMA shadow keep no noise levels).

    Raises:
        CheckpointError: A key with no place in ncsn's network, a missing key, or a shape
            mismatch (one line naming the first one and the counts).
    """
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in official.items():
        ours = official_to_ncsn_key(key)
        if ours is None or ours not in own:
            unknown.append(key)
            continue
        if tuple(value.shape) != tuple(own[ours].shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(value.shape)} but the network built from "
                f"the config needs {tuple(own[ours].shape)}; the config does not belong to "
                "this checkpoint (check ngf, channels, num_classes)"
            )
        mapped[ours] = value.to(own[ours].dtype)
    if "sigmas" not in mapped and "sigmas" in own:
        mapped["sigmas"] = own["sigmas"].clone()
    missing = [k for k in own if k not in mapped]
    if unknown or missing:
        first = f"unexpected key {unknown[0]}" if unknown else f"no weights for {missing[0]}"
        raise CheckpointError(
            f"{where}: {first} ({len(unknown)} unexpected, {len(missing)} missing); it is not "
            "the official network this config describes"
        )
    return mapped
