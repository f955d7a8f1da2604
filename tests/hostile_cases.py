"""The hostile pass, part 1: what a case is, and the cases for config, devices, data and toy.

A case is a command line (or an API call) built inside a fresh folder, plus what must come of
it: the exit code, a phrase of the one stderr line, and for some a further check. The runner
(``tests/test_hostile.py``) also checks for every case that no file was lost or changed, that
stderr is one line without a traceback, and that every ``--option`` the line names exists on
that subcommand.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hostile_inputs import (
    billion_laughs,
    billion_laughs_flow,
    float_tiff,
    gray_png,
    png16,
    png_bomb,
    truncated_png,
)

RELIAB_A = "reliab-a"  # the run-folder and checkpoint guarantees (workdir ownership, locking,
# whole-file checksums, `latest`, crash recovery), implemented beside these input checks


@dataclass
class Env:
    """The folders a case works in: ``run`` is a shared trained workdir (never modified)."""

    run: Path
    tmp: Path
    _work: Path | None = None

    def work(self) -> Path:
        """A private copy of the trained workdir, made on first use."""
        if self._work is None:
            self._work = Path(shutil.copytree(self.run, self.tmp / "work"))
        return self._work

    def ckpt(self, run: Path | None = None) -> Path:
        from ncsn.checkpoint import find_checkpoint

        return find_checkpoint(run or self.run)

    def file(self, name: str, data: bytes | str = b"") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def folder(self, n: int = 12, size: int = 8) -> Path:
        """An image folder of ``n`` small gray PNGs."""
        folder = self.tmp / "images"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            gray_png(folder / f"{i:02d}.png", size=size, seed=i)
        return folder


Argv = Callable[[Env], list[str]]


@dataclass
class Case:
    """One hostile input and what must come of it.

    Attributes:
        cat: Category (config, checkpoints, workdirs, signals, devices, data, outputs,
            inpainting, eval, toy).
        name: Short description.
        argv: Builds the command line (without ``ncsn``).
        match: A phrase the stderr line must hold.
        code: Expected exit code (None: any, but one line if not 0).
        setup: Prepares hostile files before the snapshot.
        api: Instead of ``argv``, a Python call; an NCSNError counts as exit code 2.
        check: Further assertions ``check(env, stderr)`` after the call.
        patch: ``patch(env, monkeypatch)`` before the call (simulated faults).
        owner: ``reliab-a`` for the run-folder and checkpoint guarantees (for the tally).
        may_change: Files (relative to the case folder) the call may write or replace.
        skip_root: Skip when running as root (permissions do not apply).
        extra_lines: Informational stderr lines allowed before the error line.
    """

    cat: str
    name: str
    argv: Argv | None = None
    match: str = ""
    code: int | None = 2
    setup: Callable[[Env], object] | None = None
    api: Callable[[Env], object] | None = None
    check: Callable[[Env, str], None] | None = None
    patch: Callable[[Env, object], None] | None = None
    owner: str = ""
    may_change: tuple[str, ...] = field(default_factory=tuple)
    skip_root: bool = False
    extra_lines: int = 0


# The shared run: ``train(env, *SHARED_RUN, workdir=run)``, checkpoints at steps 2 and 4.
SHARED_RUN = ("--set", "training.n_iters=4", "--set", "training.checkpoint_every=2")


def train(env: Env, *more: str, workdir: Path | None = None) -> list[str]:
    """``ncsn train`` of the tiny digits model into ``workdir`` (default: tmp/w)."""
    tiny = ["model.options={ch: 8, ch_mult: [1, 2], num_res_blocks: 1}", "model.num_levels=3"]
    tiny += ["training.log_every=1", "training.eval_every=0", "training.sample_every=0"]
    tiny += ["training.tensorboard=false", "training.batch_size=16", "training.n_iters=2"]
    sets = [x for item in tiny for x in ("--set", item)]
    wd = workdir or env.tmp / "w"
    return ["train", "--workdir", str(wd), "--no-progress", "--device", "cpu", *sets, *more]


def dry(*sets: str) -> Argv:
    return lambda env: ["train", "--dry-run", *[x for s in sets for x in ("--set", s)]]


def yaml_file(text: str) -> Argv:
    return lambda env: ["train", "--dry-run", "--config", str(env.file("c.yaml", text))]


def _no_checkpoint(env: Env, err: str) -> None:
    assert not (env.tmp / "w" / "checkpoints").exists(), "no training step may have run"


CONFIG = [
    Case("config", "unknown bundled name", lambda e: ["train", "--config", "nope"], "nope"),
    Case("config", "missing YAML path", lambda e: ["train", "--config", "/no/such.yaml"]),
    Case("config", "YAML syntax error", yaml_file("training: {lr: [1, 2\n"), "at line 2"),
    Case("config", "tab indentation", yaml_file("training:\n\tlr: 1\n"), "YAML"),
    Case("config", "billion laughs file (504 bytes)", yaml_file(billion_laughs()), "YAML bomb"),
    Case(
        "config",
        "billion laughs in model.options",
        yaml_file("model:\n  options:\n" + billion_laughs(indent="    ")),
        "YAML bomb",
    ),
    Case("config", "billion laughs via --set", dry(f"model.options={billion_laughs_flow()}")),
    Case("config", "recursive alias", yaml_file("model: &m {options: *m}"), "recursive"),
    Case("config", "nesting 60 deep", yaml_file("name: " + "[" * 60 + "]" * 60), "nesting"),
    Case("config", "duplicate top-level key", yaml_file("name: a\nname: b\n"), "duplicate key"),
    Case(
        "config",
        "duplicate key in model.options",
        yaml_file("model:\n  options: {ch: 8, ch: 16}\n"),
        "duplicate key 'ch'",
    ),
    Case("config", "duplicate key via --set", dry("model.options={ch: 8, ch: 16}"), "duplicate"),
    Case("config", "top level a list", yaml_file("- a\n- b\n"), "top level must be a mapping"),
    Case("config", "top level a number", yaml_file("42\n"), "top level must be a mapping"),
    Case("config", "unknown top-level key", yaml_file("trainin: {}\n"), "did you mean"),
    Case("config", "unknown key typo", dry("training.lrr=1"), "did you mean 'lr'"),
    Case("config", "section not a mapping", yaml_file("training: 5\n"), "must be a mapping"),
    Case("config", "binary config file", yaml_file("\x00\x01\x02\xff"), "c.yaml"),
    Case("config", "config path is a folder", lambda e: ["train", "--config", str(e.tmp)]),
    Case("config", "lr a word", dry("training.lr=fast"), "expected a number"),
    Case("config", "lr negative", dry("training.lr=-1"), "out of range"),
    Case("config", "lr 1e400 (inf)", dry("training.lr=1e400"), "finite"),
    Case("config", "lr .nan", dry("training.lr=.nan"), "finite"),
    Case("config", "batch_size 0", dry("training.batch_size=0"), "out of range"),
    Case("config", "batch_size 1.5", dry("training.batch_size=1.5"), "expected an integer"),
    Case("config", "batch_size true", dry("training.batch_size=true"), "expected an integer"),
    Case("config", "ema_rate 1", dry("training.ema_rate=1"), "random initialisation"),
    Case("config", "ema_rate 1.5", dry("training.ema_rate=1.5"), "out of range"),
    Case("config", "seed 2^63", dry("training.seed=9223372036854775808"), "out of range"),
    Case("config", "seed 2^70", dry("training.seed=1180591620717411303424"), "out of range"),
    Case("config", "seed -1", dry("training.seed=-1"), "out of range"),
    Case("config", "loss_power 1e308", dry("training.loss_power=1e308"), "out of range"),
    Case("config", "loss_power -3", dry("training.loss_power=-3"), "out of range"),
    Case("config", "val_size 1.5", dry("data.val_size=1.5"), "neither a fraction"),
    Case("config", "val_size -0.1", dry("data.val_size=-0.1"), "out of range"),
    Case("config", "sigma_max < sigma_min", dry("model.sigma_max=0.001"), "must be larger"),
    Case("config", "num_levels 0", dry("model.num_levels=0"), "out of range"),
    Case("config", "num_levels 10^9", dry("model.num_levels=1000000000"), "out of range"),
    Case("config", "unknown model name", dry("model.name=transformer"), "choose one of"),
    Case("config", "model.options a number", dry("model.options=5"), "mapping"),
    Case("config", "image_size 0", dry("data.image_size=0"), "out of range"),
    Case("config", "channels 2", dry("data.channels=2"), "choose one of"),
    Case("config", "eta 0 for cas", dry("sampling.sampler=cas", "sampling.eta=0"), "out of range"),
    Case("config", "n_projections 0", dry("training.n_projections=0"), "out of range"),
    Case("config", "time_limit -5", dry("training.time_limit=-5"), "out of range"),
    Case("config", "empty data set name", dry("data.dataset=''"), "data.dataset is empty"),
    Case("config", "--set without =", dry("training.lr"), "section.key=value"),
    Case("config", "--set unknown section", dry("optim.lr=1"), "section one of"),
    Case("config", "--set into a number", dry("training.lr.x=1"), "is not a mapping"),
    Case(
        "config",
        "unknown model option",
        lambda e: train(e, "--set", "model.options={wings: 2}"),
        "unknown option(s) 'wings'",
        check=_no_checkpoint,
    ),
    Case(
        "config",
        "model too large for memory (ch=100000)",
        lambda e: train(e, "--set", "model.options={ch: 100000}"),
        "the weights take",
        check=_no_checkpoint,
    ),
    Case(
        "config",
        "a million residual blocks",
        lambda e: train(e, "--set", "model.options={num_res_blocks: 1000000}"),
        "weight tensors",
        check=_no_checkpoint,
    ),
    Case(
        "config",
        "data resized beyond memory",
        lambda e: train(e, "--set", "data.image_size=4096"),
        "need",
        check=_no_checkpoint,
    ),
    Case("config", "techniques: unknown config", lambda e: ["techniques", "--config", "x"], "x"),
]

_DEVICE_ARGV: dict[str, Argv] = {
    "train": lambda e: train(e),
    "sample": lambda e: ["sample", "--checkpoint", str(e.run), "--out", str(e.tmp / "s.png")],
    "inpaint": lambda e: ["inpaint", "--checkpoint", str(e.run), "--out", str(e.tmp / "i.png")],
    "eval": lambda e: ["eval", "--checkpoint", str(e.run), "--out", str(e.tmp / "r.json")],
    "toy": lambda e: ["toy", "fig3", "--quick", "--out", str(e.tmp / "toy")],
    "techniques": lambda e: ["techniques"],
    "configs": lambda e: ["configs"],
}
_BAD_DEVICES = {
    "mps": "mps",
    "banana": "not a device name",
    "meta": "holds no data",
    "cuda:7": "cuda:7",
    "": "not a device name",
    "cuda:-1": "cuda:-1",
    "CPU": "not a device name",
    "cpu cuda": "not a device name",
}


def _with_device(argv: Argv, device: str) -> Argv:
    return lambda env: [*argv(env), "--device", device]


DEVICES = [
    Case(
        "devices",
        f"{command} --device {device!r}",
        _with_device(argv, device),
        match,
    )
    for command, argv in _DEVICE_ARGV.items()
    for device, match in _BAD_DEVICES.items()
    if command in ("train", "sample") or device in ("mps", "banana", "meta")
]


def folder_train(make: Callable[[Env], object], *more: str) -> Argv:
    def argv(env: Env) -> list[str]:
        folder = env.tmp / "images"
        folder.mkdir(exist_ok=True)
        make(env)
        return train(env, "--set", f"data.dataset=folder:{folder}", *more)

    return argv


def _img(name: str, fn: Callable[..., object], *args: object) -> Callable[[Env], object]:
    return lambda env: (env.folder(6), fn(env.tmp / "images" / name, *args))


def _mixed_sizes(env: Env) -> None:
    env.folder(3)
    gray_png(env.tmp / "images" / "big.png", size=12)


def _non_square(env: Env) -> None:
    Image.new("L", (10, 6)).save(env.tmp / "images" / "b.png")


def _pal_rgba(env: Env) -> None:
    env.folder(3)
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(env.tmp / "images" / "clear.png")


def _assert_16bit_mean(env: Env, err: str) -> None:
    from ncsn.data import as_tensor, get_dataset

    x = as_tensor(get_dataset(str(env.tmp / "images"), split="all"))[0]
    assert abs(float(x.mean()) - 0.49) < 0.01, float(x.mean())


def _sixteen_bit_folder(env: Env) -> None:
    (env.tmp / "images").mkdir(exist_ok=True)
    for i in range(4):
        png16(env.tmp / "images" / f"{i}.png", round(0.49 * 65535))


DATA = [
    Case(
        "data",
        "truncated image before step 1",
        folder_train(_img("cut.png", truncated_png, 8)),
        "cut.png",
        check=_no_checkpoint,
    ),
    Case("data", "PNG bomb (400 Mpx)", folder_train(_img("bomb.png", png_bomb)), "bomb.png"),
    Case(
        "data",
        "PNG bomb (100 Mpx, PIL's warning range)",
        folder_train(_img("bomb.png", png_bomb, 10_000, 10_000)),
        "decompression-bomb limit",
    ),
    Case("data", "float image out of [0,1]", folder_train(_img("f.tif", float_tiff, 3.0)), "f.tif"),
    Case(
        "data",
        "text file named .png",
        folder_train(lambda e: (e.folder(4), e.file("images/x.png", "hello"))),
        "x.png",
    ),
    Case("data", "empty image file", folder_train(lambda e: e.file("images/z.png")), "z.png"),
    Case("data", "folder without images", folder_train(lambda e: e.file("images/a.txt", "x"))),
    Case("data", "images of mixed sizes", folder_train(_mixed_sizes), "differ in size"),
    Case("data", "non-square images", folder_train(_non_square), "not square"),
    Case("data", "missing folder", lambda e: train(e, "--set", "data.dataset=folder:/no/such")),
    Case(
        "data", "folder: a file", lambda e: train(e, "--set", f"data.dataset=folder:{e.file('f')}")
    ),
    Case(
        "data", "unknown data set", lambda e: train(e, "--set", "data.dataset=imagenet"), "imagenet"
    ),
    Case(
        "data",
        "MNIST missing (advice names --data-root)",
        lambda e: train(e, "--set", "data.dataset=mnist", "--data-root", str(e.tmp / "none")),
        "--data-root",
    ),
    Case(
        "data",
        "CIFAR-10 missing",
        lambda e: train(e, "--set", "data.dataset=cifar10", "--data-root", str(e.tmp)),
        "CIFAR10 not found",
    ),
    Case(
        "data",
        "CelebA missing",
        lambda e: train(e, "--set", "data.dataset=celeba", "--data-root", str(e.tmp)),
        "CelebA",
    ),
    Case(
        "data",
        "corrupt MNIST files",
        lambda e: train(e, "--set", "data.dataset=mnist", "--data-root", str(e.tmp)),
        "MNIST",
        setup=lambda e: [
            e.file(f"MNIST/raw/{n}", b"garbage")
            for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        ],
    ),
    Case(
        "data",
        "val_size larger than the data",
        lambda e: train(e, "--set", "data.val_size=100000"),
        "leaves no training data",
    ),
    Case(
        "data",
        "techniques: MNIST missing",
        lambda e: ["techniques", "--config", "mnist", "--data-root", str(e.tmp)],
        "--data-root",
    ),
    Case(
        "data",
        "16-bit PNGs keep their brightness (not 0.999)",
        api=lambda e: _sixteen_bit_folder(e),
        code=0,
        check=_assert_16bit_mean,
    ),
    Case(
        "data",
        "transparent pixels become white",
        api=lambda e: _pal_rgba(e),
        code=0,
        check=lambda e, err: _assert_white(e),
    ),
]


def _assert_white(env: Env) -> None:
    from ncsn.decode import load_image

    assert load_image(env.tmp / "images" / "clear.png", channels=1).eq(255).all()


TOY = [
    Case("toy", "--out an existing file", lambda e: ["toy", "fig3", "--out", str(e.file("f"))]),
    Case(
        "toy",
        "--out below a file",
        lambda e: ["toy", "fig3", "--out", str(e.file("f") / "sub")],
        "cannot create",
    ),
    Case(
        "toy",
        "--out read-only folder",
        lambda e: ["toy", "fig3", "--quick", "--out", str(e.tmp / "ro")],
        "not writable",
        setup=lambda e: (e.tmp / "ro").mkdir(mode=0o555),
        skip_root=True,
    ),
    Case("toy", "unknown figure", lambda e: ["toy", "fig9"], "invalid choice"),
    Case("toy", "no figure", lambda e: ["toy"], "required"),
    Case("toy", "--seed -1", lambda e: ["toy", "fig1", "--seed=-1"], "must be >= 0"),
    Case("toy", "--seed 2^63", lambda e: ["toy", "fig1", "--seed", str(2**63)], "<= 9223"),
    Case("toy", "--seed 1.5", lambda e: ["toy", "fig1", "--seed", "1.5"], "expected int"),
    Case("toy", "unknown option", lambda e: ["toy", "fig1", "--fast"], "ncsn toy --help"),
]
