"""The hostile pass, part 2: checkpoints, workdirs, signals, outputs, inpainting and eval.

Cases marked ``owner=RELIAB_A`` test the run-folder and checkpoint guarantees (workdir
ownership and locking, whole-checkpoint checksums, ``latest`` confinement, crash recovery).
"""

from __future__ import annotations

import builtins
import os
import signal
from pathlib import Path

import torch

from hostile_cases import RELIAB_A, SHARED_RUN, Case, Env, train
from hostile_inputs import (
    billion_laughs,
    drop_packed,
    edit_checkpoint,
    set_packed,
)


def sample(ckpt: Path | str, env: Env, *more: str) -> list[str]:
    out = ["--out", str(env.tmp / "s.png"), "--n", "2", "--steps", "1", "--device", "cpu"]
    return ["sample", "--checkpoint", str(ckpt), *out, *more]


def inpaint(env: Env, *more: str, ckpt: Path | None = None) -> list[str]:
    args = ["--out", str(env.tmp / "i.png"), "--n-images", "1", "--completions", "1"]
    return ["inpaint", "--checkpoint", str(ckpt or env.run), *args, "--steps", "1", *more]


def evaluate(env: Env, *more: str) -> list[str]:
    return ["eval", "--out", str(env.tmp / "r.json"), "--n", "4", "--device", "cpu", *more]


def _ckpt_file(data: bytes | str) -> object:
    return lambda e: sample(e.file("c.safetensors", data), e)


def _copy_ckpt(env: Env) -> Path:
    return Path(env.file("c.safetensors", env.ckpt().read_bytes()))


def _edited(edit) -> object:
    return lambda e: sample(edit_checkpoint(_copy_ckpt(e), edit), e)


def _flip_bit(env: Env) -> list[str]:
    path = _copy_ckpt(env)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x10
    path.write_bytes(bytes(raw))
    return sample(path, env)


def _pickle(env: Env, zipped: bool = True) -> Path:
    path = env.tmp / "c.safetensors"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=zipped)
    return path


def _latest(text: str) -> object:
    def argv(env: Env) -> list[str]:
        work = env.work()
        (work / "checkpoints" / "latest").write_text(text)
        return sample(work, env)

    return argv


def _deep(state: dict) -> str:
    return "[" * 100_000 + "]" * 100_000


def _deny(env: Env, mp, name: str) -> None:
    real_read, real_listdir = Path.read_text, os.listdir

    def read(p, *a, **k):
        if p.name == name:
            raise PermissionError(13, "Permission denied", str(p))
        return real_read(p, *a, **k)

    def listdir(p):
        if Path(p).name == name:
            raise PermissionError(13, "Permission denied", str(p))
        return real_listdir(p)

    real_open = builtins.open

    def opener(file, *a, **k):
        if Path(str(file)).name == name:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    mp.setattr(Path, "read_text", read)
    mp.setattr(os, "listdir", listdir)
    mp.setattr(builtins, "open", opener)


def _step_of(run: Path) -> int:
    from ncsn.checkpoint import find_checkpoint, read_checkpoint

    return int(read_checkpoint(find_checkpoint(run))["step"])


CHECKPOINTS = [
    Case("checkpoints", "missing path", lambda e: sample("/no/such/run", e), "does not exist"),
    Case("checkpoints", "empty file", _ckpt_file(b""), "not a safetensors file"),
    Case("checkpoints", "text file", _ckpt_file("hello, I am a checkpoint"), "not a safetensors"),
    Case(
        "checkpoints",
        "pickle (torch.save zip)",
        lambda e: sample(_pickle(e), e),
        "never unpickles",
    ),
    Case(
        "checkpoints",
        "pickle (legacy torch.save)",
        lambda e: sample(_pickle(e, zipped=False), e),
        "never unpickles",
    ),
    Case(
        "checkpoints",
        "truncated to half",
        lambda e: sample(e.file("c.safetensors", e.ckpt().read_bytes()[:-20_000]), e),
        "truncated",
    ),
    Case(
        "checkpoints",
        "cut inside the header",
        lambda e: sample(e.file("c.safetensors", e.ckpt().read_bytes()[:200]), e),
        "truncated",
    ),
    Case("checkpoints", "one bit flipped in a tensor", _flip_bit, "checksum"),
    Case(
        "checkpoints",
        "plain safetensors, not ncsn",
        lambda e: sample(_plain_safetensors(e), e),
        "not an ncsn checkpoint",
    ),
    Case("checkpoints", "state JSON garbage", _edited(lambda s: "{not json"), ""),
    Case("checkpoints", "state without config", _edited(lambda s: drop_packed(s, "config")), ""),
    Case(
        "checkpoints",
        "stored config invalid (lr = -1)",
        _edited(lambda s: set_packed(s, ["config", "training", "lr"], -1)),
        "",
    ),
    Case(
        "checkpoints",
        "stored config asks for a 20 TB model",
        _edited(lambda s: set_packed(s, ["config", "model", "options", "ch"], 100_000)),
        "",
    ),
    Case(
        "checkpoints",
        "stored config of another width",
        _edited(lambda s: set_packed(s, ["config", "model", "options", "ch"], 16)),
        "",
    ),
    Case(
        "checkpoints",
        "metadata step edited",
        _edited(lambda s: set_packed(s, ["step"], 3001)),
        owner=RELIAB_A,
    ),
    Case(
        "checkpoints",
        "metadata eps edited",
        _edited(lambda s: set_packed(s, ["config", "sampling", "eps"], 9e-5)),
        owner=RELIAB_A,
    ),
    Case(
        "checkpoints",
        "state weights are lists",
        _edited(lambda s: set_packed(set_packed(s, ["model"], []), ["ema"], [])),
        owner=RELIAB_A,
    ),
    Case("checkpoints", "state nested 100,000 deep", _edited(_deep), owner=RELIAB_A),
    Case(
        "checkpoints",
        "latest escapes the folder (../)",
        _latest("../../../../etc/passwd\n"),
        "latest",
        code=0,
        owner=RELIAB_A,
        may_change=("s.png",),
    ),
    Case(
        "checkpoints",
        "latest an absolute path",
        lambda e: _latest(str(e.ckpt()))(e),
        "latest",
        code=0,
        owner=RELIAB_A,
        may_change=("s.png",),
    ),
    Case(
        "checkpoints",
        "latest names a missing file: newest used",
        _latest("step_99999999.safetensors\n"),
        code=0,
        may_change=("s.png",),
    ),
    Case(
        "checkpoints",
        "latest unreadable: a warning, the newest used",
        lambda e: sample(e.run, e),
        "Permission denied",
        code=0,
        patch=lambda e, mp: _deny(e, mp, "latest"),
        may_change=("s.png",),
    ),
    Case(
        "checkpoints",
        "checkpoints/ unreadable, latest stale",
        _latest("step_99999999.safetensors\n"),
        "cannot list",
        patch=lambda e, mp: _deny(e, mp, "checkpoints"),
    ),
    Case("checkpoints", "workdir without checkpoints", lambda e: sample(e.tmp, e), "no checkpoint"),
    Case(
        "checkpoints",
        "eval --checkpoint a pickle",
        lambda e: evaluate(e, "--checkpoint", str(_pickle(e)), "--metrics", "dsm"),
        "never unpickles",
    ),
    Case(
        "checkpoints",
        "inpaint --checkpoint truncated",
        lambda e: inpaint(e, ckpt=e.file("c.safetensors", e.ckpt().read_bytes()[:-999])),
        "truncated",
    ),
]


def _plain_safetensors(env: Env) -> Path:
    from safetensors.torch import save_file

    path = env.tmp / "c.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    return path


def _on_work(*more: str, set_config: str | None = None) -> object:
    def argv(env: Env) -> list[str]:
        work = env.work()
        if set_config is not None:
            (work / "config.yaml").write_text(set_config)
        return train(env, *more, workdir=work)

    return argv


def _no_overwrite_advice(env: Env, err: str) -> None:
    assert "--overwrite" not in err, "never advise deleting a run"


def _metrics_ok(env: Env, err: str) -> None:
    import json

    lines = (env.work() / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == sorted(steps) and steps[-1] == 6, steps


def _second_trainer(env: Env) -> list[str]:
    """Another writer holds the workdir's lock (the lock ``ncsn train`` takes; ``flock`` on a
    second open file conflicts even within one process, as between two processes)."""
    from ncsn.lock import WorkdirLock

    work = env.work()
    env.holder = WorkdirLock(work).acquire()
    return train(env, workdir=work)


def _release_second_trainer(env: Env, err: str) -> None:
    env.holder.release()
    assert f"PID {os.getpid()}" in err, err


def _disk_full_for_checkpoints(env: Env, mp) -> None:
    """``fsync`` of a checkpoint's temporary file fails as on a full disk."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if ".step_" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        real(fd)

    mp.setattr(os, "fsync", fsync)


WORKDIRS = [
    Case("workdirs", "workdir is a file", lambda e: train(e, workdir=e.file("f")), "f"),
    Case("workdirs", "workdir below a file", lambda e: train(e, workdir=e.file("f") / "w")),
    Case("workdirs", "workdir name too long", lambda e: train(e, workdir=e.tmp / ("x" * 300))),
    Case(
        "workdirs",
        "config.yaml corrupted",
        _on_work(set_config="model: [unclosed\n"),
        "config.yaml",
        check=_no_overwrite_advice,
    ),
    Case(
        "workdirs",
        "config.yaml binary",
        _on_work(set_config="\x00\xff\x00"),
        "config.yaml",
        check=_no_overwrite_advice,
    ),
    Case("workdirs", "config.yaml a YAML bomb", _on_work(set_config=billion_laughs()), "YAML bomb"),
    Case(
        "workdirs",
        "config.yaml deleted: the run continues from its checkpoint's config",
        lambda e: (os.remove(e.work() / "config.yaml"), _on_work("--set", "training.n_iters=5")(e))[
            1
        ],
        code=0,
        check=lambda e, err: _assert_step(e.work(), 5),
        owner=RELIAB_A,
        may_change=("work/*",),
    ),
    Case(
        "workdirs",
        "different config",
        _on_work("--set", "training.lr=0.5"),
        "--resume and no --config or --set of these keys",
    ),
    Case(
        "workdirs",
        "different config with --resume",
        _on_work("--set", "training.lr=0.5", "--resume"),
        "--resume without --config, and no --set of these keys",
    ),
    Case("workdirs", "--resume in an empty folder", lambda e: train(e, "--resume"), "no run"),
    Case(
        "workdirs",
        "checkpoints/ unreadable",
        _on_work(),
        "cannot list",
        patch=lambda e, mp: _deny(e, mp, "checkpoints"),
        check=_no_overwrite_advice,
    ),
    Case(
        "workdirs",
        "--overwrite with a foreign file in samples/",
        lambda e: (e.work(), e.file("work/samples/photo.txt", "mine"), _on_work("--overwrite")(e))[
            2
        ],
        owner=RELIAB_A,
    ),
    Case(
        "workdirs",
        "--overwrite of a foreign config.yaml",
        lambda e: train(e, "--overwrite", workdir=e.file("x/config.yaml", "mine: 1\n").parent),
        owner=RELIAB_A,
    ),
    Case(
        "workdirs",
        "--overwrite with checkpoints/ a symlink",
        lambda e: _symlinked(e),
        code=None,
        owner=RELIAB_A,
        may_change=("work/config.yaml", "work/metrics.jsonl", "work/checkpoints"),
    ),
    Case(
        "workdirs",
        "a second trainer on the same workdir",
        _second_trainer,
        check=_release_second_trainer,
        owner=RELIAB_A,
        may_change=("work/.ncsn-lock",),  # the holder wrote its PID
    ),
    Case(
        "workdirs",
        "user copy in checkpoints/ survives pruning",
        lambda e: (
            e.work(),
            e.file("work/checkpoints/step_00000001_keep.safetensors", e.ckpt().read_bytes()),
            _on_work("--set", "training.n_iters=12", "--set", "training.checkpoint_every=2")(e),
        )[2],
        code=0,
        check=lambda e, err: _assert_kept(
            e.work() / "checkpoints" / "step_00000001_keep.safetensors"
        ),
        owner=RELIAB_A,
        may_change=("work/*",),
    ),
    Case(
        "workdirs",
        "half-written last metrics line",
        lambda e: (
            open(e.work() / "metrics.jsonl", "a").write('{"step": 5, "lo'),  # noqa: SIM115
            _on_work("--set", "training.n_iters=6")(e),
        )[1],
        code=0,
        check=_metrics_ok,
        owner=RELIAB_A,
        may_change=("work/*",),
    ),
    Case(
        "workdirs",
        "killed before the first checkpoint: same command again",
        lambda e: _killed_early(e),
        code=0,
        owner=RELIAB_A,
        may_change=("w/*",),
    ),
    Case(
        "workdirs",
        "disk full while writing a checkpoint",
        _on_work("--set", "training.n_iters=6"),
        "space",
        patch=_disk_full_for_checkpoints,
        extra_lines=1,  # "resuming ... from step 4"
        check=lambda e, err: _assert_step(e.work(), 4),
        owner=RELIAB_A,
        may_change=("work/*",),
    ),
    Case(
        "workdirs",
        "non-finite loss at step 1",
        lambda e: train(e, "--set", "model.sigma_max=1e38"),
        "no checkpoint written yet",
        may_change=("w/*",),
    ),
    Case(
        "workdirs",
        "a foreign file in the workdir is kept",
        lambda e: (e.file("w/notes.txt", "mine"), train(e, "--set", "training.n_iters=1"))[1],
        code=0,
        may_change=("w/*",),
    ),
]


def _symlinked(env: Env) -> list[str]:
    import shutil

    work = env.work()
    target = env.tmp / "elsewhere"
    shutil.move(str(work / "checkpoints"), target)
    (work / "checkpoints").symlink_to(target)
    return train(env, "--overwrite", workdir=work)


def _killed_early(env: Env) -> list[str]:
    """What ``kill -9`` during step 1 leaves: the config and the metrics log, no checkpoint."""
    for name in ("config.yaml", "metrics.jsonl"):
        env.file(f"w/{name}", (env.run / name).read_bytes())
    return train(env, *SHARED_RUN, workdir=env.tmp / "w")


def _assert_kept(path: Path) -> None:
    assert path.is_file(), f"{path.name} was deleted"


def _assert_complete(run: Path) -> None:
    """Every checkpoint file there is whole (none half-written), and no temporary is left."""
    from ncsn.checkpoint import list_checkpoints, read_checkpoint

    for path in list_checkpoints(run):
        read_checkpoint(path)
    folder = run / "checkpoints"
    assert not (folder.exists() and list(folder.glob(".*.tmp"))), "a temporary file was left"


def _assert_named_step(run: Path, err: str, at_least: int) -> None:
    """The message names the checkpoint written (at or after the signalled step); it is whole
    and the run's latest."""
    import re

    named = re.search(r"step_(\d+)\.safetensors", err)
    assert named, err
    assert int(named.group(1)) >= at_least, err
    _assert_complete(run)
    _assert_step(run, int(named.group(1)))


def _assert_step(run: Path, step: int) -> None:
    assert _step_of(run) == step, "the previous checkpoint must stay the latest and intact"


def _signal_at(step: int, *signums: int):
    """Send ``signums`` to this process right after training step ``step`` is logged."""

    def patch(env: Env, mp) -> None:
        from ncsn import workdir

        real = workdir.MetricsLog.write

        def write(self, record):
            real(self, record)
            if record.get("step") == step and "loss" in record:
                for s in signums:
                    os.kill(os.getpid(), s)

        mp.setattr(workdir.MetricsLog, "write", write)

    return patch


def _signal_in_save(step: int, signum: int):
    """A first ``signum`` after ``step``, a second one while its checkpoint is written."""

    def patch(env: Env, mp) -> None:
        from ncsn import checkpoint

        real = checkpoint.save_checkpoint

        def save(path, state):
            os.kill(os.getpid(), signum)
            return real(path, state)

        mp.setattr(checkpoint, "save_checkpoint", save)
        _signal_at(step, signum)(env, mp)

    return patch


def _interrupt(target: str):
    def patch(env: Env, mp) -> None:
        def stop(*a, **k):
            raise KeyboardInterrupt

        mp.setattr(target, stop)

    return patch


def _long(env: Env, workdir: Path | None = None) -> list[str]:
    return train(env, "--set", "training.n_iters=100", workdir=workdir)


SIGNALS = [
    Case(
        "signals",
        "SIGTERM after step 2",
        _long,
        "stopped by SIGTERM at step",
        code=143,
        patch=_signal_at(2, signal.SIGTERM),
        check=lambda e, err: _assert_named_step(e.tmp / "w", err, 2),
        may_change=("w/*",),
    ),
    Case(
        "signals",
        "SIGINT after step 1",
        _long,
        "stopped by SIGINT at step",
        code=130,
        patch=_signal_at(1, signal.SIGINT),
        check=lambda e, err: _assert_named_step(e.tmp / "w", err, 1),
        may_change=("w/*",),
    ),
    Case(
        "signals",
        "SIGTERM in a resumed run",
        lambda e: _long(e, e.work()),
        "stopped by SIGTERM at step",
        code=143,
        patch=_signal_at(5, signal.SIGTERM),
        check=lambda e, err: _assert_named_step(e.work(), err, 5),
        may_change=("work/*",),
        extra_lines=1,  # "resuming ... from step 4"
    ),
    Case(
        "signals",
        "two SIGTERMs at once",
        _long,
        "SIGTERM",
        code=143,
        patch=_signal_at(2, signal.SIGTERM, signal.SIGTERM),
        check=lambda e, err: _assert_complete(e.tmp / "w"),
        owner=RELIAB_A,
        may_change=("w/*",),
    ),
    Case(
        "signals",
        "SIGTERM while the checkpoint is written",
        _long,
        "SIGTERM",
        code=143,
        patch=_signal_in_save(2, signal.SIGTERM),
        check=lambda e, err: _assert_named_step(e.tmp / "w", err, 2),
        owner=RELIAB_A,
        may_change=("w/*",),
    ),
    Case(
        "signals",
        "SIGINT while the checkpoint is written",
        _long,
        "SIGINT",
        code=130,
        patch=_signal_in_save(1, signal.SIGINT),
        check=lambda e, err: _assert_named_step(e.tmp / "w", err, 1),
        owner=RELIAB_A,
        may_change=("w/*",),
    ),
    Case(
        "signals",
        "Ctrl-C while loading data",
        _long,
        "interrupted",
        code=130,
        patch=_interrupt("ncsn.training._resolve_data"),
        may_change=("w/*",),
    ),
    Case(
        "signals",
        "Ctrl-C while sampling",
        lambda e: sample(e.run, e),
        "interrupted",
        code=130,
        patch=_interrupt("ncsn.api._run_sampler"),
    ),
    Case(
        "signals",
        "Ctrl-C while inpainting",
        lambda e: inpaint(e),
        "interrupted",
        code=130,
        patch=_interrupt("ncsn.api.annealed_langevin_inpainting"),
    ),
    Case(
        "signals",
        "Ctrl-C while evaluating",
        lambda e: evaluate(e, "--checkpoint", str(e.run), "--metrics", "nn"),
        "interrupted",
        code=130,
        patch=_interrupt("ncsn.api._run_sampler"),
    ),
]
