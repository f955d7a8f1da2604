"""The hostile pass, part 3: output paths, inpainting and eval."""

from __future__ import annotations

import numpy as np

from hostile_cases import RELIAB_A, Case, Env
from hostile_cases_runs import evaluate, inpaint, sample
from hostile_inputs import npz_declaring, png16, png_bomb, truncated_png


def _out(flag: str, where: str):
    """``sample`` with ``flag`` pointing at ``where`` (relative to the case folder)."""
    return lambda e: [*sample(e.run, e), flag, str(e.tmp / where)]


def _same_as_checkpoint(flag: str):
    def argv(env: Env) -> list[str]:
        ckpt = env.ckpt(env.work())
        return [*sample(ckpt, env), flag, str(ckpt)]

    return argv


def _shipped() -> str:
    from ncsn.metrics.classifier import classifier_asset_path

    return str(classifier_asset_path("digits"))


def _sample_arg(flag: str, value: str):
    return lambda e: [*sample(e.run, e), f"{flag}={value}"]


OUTPUTS = [
    Case("outputs", "--out in a missing folder", _out("--out", "none/s.png"), "does not exist"),
    Case("outputs", "--out is a folder", lambda e: [*sample(e.run, e), "--out", str(e.tmp)]),
    Case(
        "outputs",
        "--out below a file",
        lambda e: [*sample(e.run, e), "--out", str(e.file("f") / "s.png")],
        "not a folder",
    ),
    Case("outputs", "--gif in a missing folder", _out("--gif", "none/c.gif"), "--gif"),
    Case("outputs", "--save-npz in a missing folder", _out("--save-npz", "no/s.npz"), "--save"),
    Case("outputs", "--out empty", lambda e: [*sample(e.run, e), "--out", ""], "is a folder"),
    Case(
        "outputs",
        "--out read-only folder",
        _out("--out", "ro/s.png"),
        "not writable",
        setup=lambda e: (e.tmp / "ro").mkdir(mode=0o555),
        skip_root=True,
    ),
    Case("outputs", "--save-npz = --out", _out("--save-npz", "s.png"), owner=RELIAB_A),
    Case("outputs", "--gif = --out", _out("--gif", "s.png"), owner=RELIAB_A),
    Case("outputs", "--out = the checkpoint", _same_as_checkpoint("--out"), owner=RELIAB_A),
    Case("outputs", "--save-npz = checkpoint", _same_as_checkpoint("--save-npz"), owner=RELIAB_A),
    Case(
        "outputs",
        "inpaint --out in a missing folder",
        lambda e: [*inpaint(e), "--out", str(e.tmp / "none" / "i.png")],
        "does not exist",
    ),
    Case("outputs", "inpaint --out a folder", lambda e: [*inpaint(e), "--out", str(e.tmp)]),
    Case(
        "outputs",
        "eval --out in a missing folder",
        lambda e: [*evaluate(e, "--metrics", "dsm"), "--out", str(e.tmp / "no" / "r.json")],
        "does not exist",
    ),
    Case("outputs", "eval --out a folder", lambda e: [*evaluate(e), "--out", str(e.tmp)]),
    Case("outputs", "eval without --out", lambda e: ["eval", "--checkpoint", str(e.run)], "--out"),
    Case(
        "outputs",
        "--classifier-out the shipped classifier",
        lambda e: ["eval", "--retrain-classifier", "digits", "--classifier-out", _shipped()],
        "never replaced",
    ),
    Case(
        "outputs",
        "--classifier-out in a missing folder",
        lambda e: ["eval", "--retrain-classifier", "digits", "--classifier-out", "/no/c.st"],
        "does not exist",
    ),
    Case("outputs", "--n 0", _sample_arg("--n", "0"), "must be >= 1"),
    Case("outputs", "--n 1.5", _sample_arg("--n", "1.5"), "expected int"),
    Case("outputs", "--nrow 0", _sample_arg("--nrow", "0"), "must be >= 1"),
    Case("outputs", "--batch-size 0", _sample_arg("--batch-size", "0"), "must be >= 1"),
    Case("outputs", "--steps 0", _sample_arg("--steps", "0"), "must be >= 1"),
    Case("outputs", "--eps 0", _sample_arg("--eps", "0"), "must be >="),
    Case("outputs", "--eps -1", _sample_arg("--eps", "-1"), "must be >="),
    Case("outputs", "--eps 1e-400", _sample_arg("--eps", "1e-400"), "must be >="),
    Case("outputs", "--eps nan", _sample_arg("--eps", "nan"), "finite"),
    Case("outputs", "--eps inf", _sample_arg("--eps", "inf"), "finite"),
    Case("outputs", "--seed 2^63", _sample_arg("--seed", str(2**63)), "<= 9223372036854775807"),
    Case("outputs", "--sampler bogus", _sample_arg("--sampler", "ddim"), "is not valid"),
    Case("outputs", "sample without --out", lambda e: ["sample", "--checkpoint", "x"], "--out"),
    Case("outputs", "unknown option", lambda e: [*sample(e.run, e), "--fast"], "sample --help"),
]


def _mask(name: str, make) -> object:
    def argv(env: Env) -> list[str]:
        path = env.tmp / name
        make(path)
        return [*inpaint(env), "--mask", str(path)]

    return argv


def _images(make) -> object:
    def argv(env: Env) -> list[str]:
        folder = env.folder(4)
        make(folder)
        return [*inpaint(env), "--images", str(folder)]

    return argv


INPAINTING = [
    Case("inpainting", "unknown mask", lambda e: [*inpaint(e), "--mask", "diagonal"], "diagonal"),
    Case("inpainting", "mask PNG missing", _mask("m.png", lambda p: None), "not found"),
    Case("inpainting", "mask PNG bomb", _mask("m.png", png_bomb), "decompression-bomb limit"),
    Case("inpainting", "mask PNG truncated", _mask("m.png", truncated_png), "m.png"),
    Case(
        "inpainting", "mask text named .png", _mask("m.png", lambda p: p.write_text("x")), "m.png"
    ),
    Case("inpainting", "mask empty file", _mask("m.png", lambda p: p.write_bytes(b"")), "m.png"),
    Case(
        "inpainting",
        "16-bit mask PNG",
        _mask("m.png", lambda p: png16(p, 65535)),
        code=0,
        may_change=("i.png",),
    ),
    Case("inpainting", "--images unknown", lambda e: [*inpaint(e), "--images", "lsun"], "lsun"),
    Case("inpainting", "--images bad split", lambda e: [*inpaint(e), "--images", "digits:dev"]),
    Case(
        "inpainting",
        "--images MNIST missing",
        lambda e: [*inpaint(e), "--images", "mnist", "--data-root", str(e.tmp)],
        "--data-root",
    ),
    Case("inpainting", "--images a file", lambda e: [*inpaint(e), "--images", str(e.file("f"))]),
    Case(
        "inpainting",
        "--images folder with a truncated image",
        _images(lambda f: truncated_png(f / "cut.png", size=8)),
        "cut.png",
    ),
    Case("inpainting", "--images folder with a bomb", _images(lambda f: png_bomb(f / "b.png"))),
    Case(
        "inpainting",
        "--images empty folder",
        lambda e: [*inpaint(e), "--images", str((e.tmp / "empty").mkdir() or e.tmp / "empty")],
        "no image files",
    ),
    Case("inpainting", "--n-images 0", lambda e: [*inpaint(e), "--n-images", "0"], ">= 1"),
    Case("inpainting", "--completions 0", lambda e: [*inpaint(e), "--completions", "0"], ">= 1"),
    Case(
        "inpainting",
        "--checkpoint missing",
        lambda e: inpaint(e, ckpt=e.tmp / "none"),
        "does not exist",
    ),
]


def _npz(make) -> object:
    def argv(env: Env) -> list[str]:
        path = env.tmp / "s.npz"
        make(path)
        return evaluate(env, "--samples", str(path), "--data", "digits", "--metrics", "nn")

    return argv


def _save(arr: np.ndarray):
    return lambda p: np.savez(p, samples=arr)


def _npy_renamed(path) -> None:
    np.save(path.with_suffix(".npy"), np.zeros((2, 1, 8, 8), np.float32))
    path.with_suffix(".npy").rename(path)


def _samples_ok(env: Env) -> str:
    path = env.tmp / "ok.npz"
    np.savez(path, samples=np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32))
    return str(path)


EVAL = [
    Case(
        "eval",
        "unknown metric",
        lambda e: evaluate(e, "--checkpoint", str(e.run), "--metrics", "bleu"),
        "unknown metrics",
    ),
    Case(
        "eval",
        "empty metric list",
        lambda e: evaluate(e, "--checkpoint", str(e.run), "--metrics", ""),
        "no metrics",
    ),
    Case(
        "eval",
        "only commas",
        lambda e: evaluate(e, "--checkpoint", str(e.run), "--metrics", ",,"),
        "no metrics",
    ),
    Case(
        "eval",
        "domain metric for CIFAR-10",
        lambda e: evaluate(
            e, "--samples", _samples_ok(e), "--data", "cifar10", "--metrics", "dfid"
        ),
        "domain classifier",
    ),
    Case("eval", "--samples missing", _npz(lambda p: None), "not found"),
    Case("eval", "--samples a .npy renamed", _npz(_npy_renamed), "is a .npy file"),
    Case("eval", "--samples text", _npz(lambda p: p.write_text("x")), "not a zip file"),
    Case(
        "eval",
        "--samples declares 25 TB",
        _npz(lambda p: npz_declaring(p, (10**6, 3, 1024, 1024))),
        "truncated",
    ),
    Case("eval", "--samples objects", _npz(_save(np.array([{}], dtype=object))), "s.npz"),
    Case("eval", "--samples without the key", _npz(lambda p: np.savez(p, x=np.zeros(2))), "keys"),
    Case("eval", "--samples 3-D", _npz(_save(np.zeros((2, 8, 8), np.float32))), "(N, C, H, W)"),
    Case("eval", "--samples in [0, 255]", _npz(_save(np.full((2, 1, 8, 8), 200.0))), "range"),
    Case("eval", "--samples NaN", _npz(_save(np.full((2, 1, 8, 8), np.nan))), "NaN"),
    Case("eval", "--samples complex", _npz(_save(np.zeros((2, 1, 8, 8), complex))), "dtype"),
    Case("eval", "--samples 16x16 for digits", _npz(_save(np.zeros((2, 1, 16, 16), np.float32)))),
    Case("eval", "nothing to evaluate", lambda e: evaluate(e, "--metrics", "nn"), "--data"),
    Case(
        "eval",
        "--samples without --data",
        lambda e: evaluate(e, "--samples", _samples_ok(e), "--metrics", "nn"),
        "--data",
    ),
    Case(
        "eval",
        "dsm without a checkpoint",
        lambda e: evaluate(e, "--samples", _samples_ok(e), "--data", "digits", "--metrics", "dsm"),
        "checkpoint",
    ),
    Case(
        "eval",
        "fid with missing Inception weights",
        lambda e: evaluate(
            e,
            "--samples",
            _samples_ok(e),
            "--data",
            "digits",
            "--metrics",
            "fid",
            "--inception-weights",
            str(e.tmp / "none.pth"),
        ),
        "--inception-weights",
    ),
    Case(
        "eval", "--ref-split bogus", lambda e: evaluate(e, "--ref-split", "dev"), "invalid choice"
    ),
    Case("eval", "--n 0", lambda e: evaluate(e, "--n", "0"), "must be >= 1"),
    Case("eval", "--retrain-classifier bogus", lambda e: ["eval", "--retrain-classifier", "cifar"]),
    Case(
        "eval",
        "--data unknown",
        lambda e: evaluate(e, "--samples", _samples_ok(e), "--data", "svhn", "--metrics", "nn"),
        "svhn",
    ),
    Case(
        "eval",
        "--data folder with a truncated image",
        lambda e: evaluate(
            e, "--samples", _samples_ok(e), "--data", str(_cut_folder(e)), "--metrics", "nn"
        ),
        "cut.png",
    ),
]


def _cut_folder(env: Env):
    folder = env.folder(12)
    truncated_png(folder / "cut.png", size=8)
    return folder
