"""Run folders: deciding between a fresh start and a resume, disk checks, the metrics log.

A run folder holds ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``samples/`` and
``tb/``. Nothing in a run folder is deleted unless the user passes ``--overwrite``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from ncsn import checkpoint as ckpt
from ncsn.config import Config, config_from_dict
from ncsn.errors import CheckpointError, NCSNError

FLIP_BY_DEFAULT = ("cifar10", "celeba")  # the paper flips these horizontally
RUN_FILES = ("config.yaml", "checkpoints", "metrics.jsonl", "samples", "tb")


def prepare_workdir(workdir: Path, cfg: Config, resume: bool | None, overwrite: bool) -> bool:
    """Decide between a fresh start and a resume; returns True to resume.

    Args:
        workdir: The run folder.
        cfg: The resolved config of the new run.
        resume: True: must resume; None: resume when the configs match; False: never resume.
        overwrite: Remove the run files first.

    Returns:
        Whether to resume from the folder's latest checkpoint.
    """
    existing = [p for p in RUN_FILES if (workdir / p).exists()]
    if not existing:
        if resume:
            raise CheckpointError(f"--resume: {workdir} holds no run to resume; drop --resume")
        return False
    if overwrite:
        for name in existing:
            target = workdir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return False
    saved = workdir / "config.yaml"
    has_ckpt = bool(ckpt.list_checkpoints(workdir))
    if saved.is_file() and has_ckpt:
        import yaml

        old = config_from_dict(yaml.safe_load(saved.read_text()), str(saved))
        diff = _config_diff(old, cfg)
        if not diff:
            if resume is False:
                raise NCSNError(
                    f"{workdir} already holds a run; pass --resume to continue it or --overwrite "
                    "to replace it"
                )
            return True
        if resume:
            raise CheckpointError(
                f"{workdir} holds a run with a different config ({diff}); resume it with its own "
                "config (no --config) or start a new --workdir"
            )
        raise NCSNError(
            f"{workdir} already holds a run with a different config ({diff}); pass --resume to "
            "continue it, --overwrite to replace it, or choose another --workdir"
        )
    raise NCSNError(
        f"{workdir} already holds files of a run ({', '.join(existing)}) but no checkpoint; "
        "pass --overwrite to replace them or choose another --workdir"
    )


# keys that may change between a run and its resumption
_RESUMABLE = {
    "training.n_iters",
    "training.time_limit",
    "training.log_every",
    "training.eval_every",
    "training.sample_every",
    "training.checkpoint_every",
    "training.keep_checkpoints",
    "training.milestone_every",
    "training.tensorboard",
    "training.threads",
    "training.max_bad_steps",
    # how a step is executed, not what it computes (same update up to rounding)
    "training.accumulate",
    "training.activation_checkpointing",
    "training.compile",
    "training.channels_last",
}


def _config_diff(old: Config, new: Config) -> str:
    out = []
    a, b = old.to_dict(), new.to_dict()
    for section in ("data", "model", "training"):
        for k in sorted(set(a[section]) | set(b[section])):
            key = f"{section}.{k}"
            va, vb = a[section].get(k), b[section].get(k)
            if key in _RESUMABLE or va == vb:
                continue
            if section == "data" and k in ("channels", "image_size", "random_flip") and vb is None:
                continue  # the new config leaves it to the data; the old one has it resolved
            out.append(f"{key}: {va!r} in the run, {vb!r} now")
    return "; ".join(out[:3])


def check_disk(workdir: Path, model: nn.Module) -> None:
    probe = workdir / ".write-test"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise NCSNError(
            f"workdir {workdir} is not writable ({e.strerror}); choose another"
        ) from None
    need = 4 * sum(p.numel() * p.element_size() for p in model.parameters()) * 3
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise NCSNError(
            f"not enough free disk in {workdir}: {free / 1e6:.0f} MB free, a checkpoint needs "
            f"about {need / 3e6:.0f} MB (keep_checkpoints more): free space or use another workdir"
        )


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and TensorBoard when installed)."""

    def __init__(self, workdir: Path, start_step: int, tensorboard: bool):
        self.path = workdir / "metrics.jsonl"
        if self.path.exists():  # drop lines written after the checkpoint we resume from
            kept = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= start_step
            ]
            self.path.write_text("".join(k + "\n" for k in kept))
        self.f = open(self.path, "a")  # noqa: SIM115
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(workdir / "tb"), purge_step=start_step + 1)
            except ImportError:
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])
                elif isinstance(v, list):
                    for i, x in enumerate(v):
                        if x is not None:
                            self.tb.add_scalar(f"{k}/level_{i}", x, record["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()
