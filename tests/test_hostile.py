"""A hostile pass over the command line: each case a bad input or a fault, run in-process.

For every case: the exit code is the expected one (2 for bad input), stderr is exactly one
line with no traceback, every ``--option`` it names exists on that subcommand, the shared
trained run is untouched, and no file in the case's folder is lost or changed (new files only
where the case allows them). The cases live in ``hostile_cases*.py``; run this file as a script
(``python tests/test_hostile.py``) for the tally by category.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import re
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

from hostile_cases import CONFIG, DATA, DEVICES, RELIAB_A, SHARED_RUN, TOY, Case, Env, train
from hostile_cases_io import EVAL, INPAINTING, OUTPUTS
from hostile_cases_runs import CHECKPOINTS, SIGNALS, WORKDIRS

CASES: list[Case] = [
    *CONFIG,
    *CHECKPOINTS,
    *WORKDIRS,
    *SIGNALS,
    *DEVICES,
    *DATA,
    *OUTPUTS,
    *INPAINTING,
    *EVAL,
    *TOY,
]


def tally() -> str:
    """Cases by category (and how many test the run-folder and checkpoint guarantees of
    issue 9's first half: ownership, locking, checksums, ``latest``, crash recovery)."""
    by_cat = Counter(c.cat for c in CASES)
    runs = Counter(c.cat for c in CASES if c.owner == RELIAB_A)
    rows = [f"{cat:<12} {n:>4}  ({runs[cat]} run-folder/checkpoint)" for cat, n in by_cat.items()]
    total = f"{'total':<12} {len(CASES):>4}  ({sum(runs.values())} run-folder/checkpoint)"
    return "\n".join([*rows, total])


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _options_of(command: str) -> set[str]:
    from ncsn.cli import subcommand_parsers

    return {s for a in subcommand_parsers()[command]._actions for s in a.option_strings}


_BAR = re.compile(r"\d+%\|")  # a tqdm progress bar (not a message)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _check_advice(line: str, argv: list[str]) -> None:
    """Every option a message names exists on the subcommand it is meant for: the one run, or
    the one named just before it (``ncsn train --workdir W``). Echoes of the user's own
    arguments are exempt."""
    for clause in re.split(r"[;()`]", line):
        if re.search(r"\bpip install\b", clause):
            continue  # pip's own options
        named = re.findall(r"\bncsn (\w+)\b", clause)
        command = named[-1] if named and named[-1] != argv[0] else argv[0]
        for option in _OPTION.findall(clause):
            if option not in argv and not any(a.startswith(option + "=") for a in argv):
                assert option in _options_of(command), f"{option} is not an option of {command}"


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory) -> Path:
    from ncsn.cli import main

    base = tmp_path_factory.mktemp("hostile")
    run = base / "run"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(train(Env(run, base), *SHARED_RUN, workdir=run)) == 0
    return run


@contextlib.contextmanager
def _shown_warnings():
    """Warnings printed to stderr as the command line prints them (pytest records them)."""

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def _call(case: Case, env: Env, argv: list[str] | None) -> tuple[int | None, str]:
    from ncsn.cli import main
    from ncsn.errors import NCSNError

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), _shown_warnings():
        try:
            if argv is None:
                case.api(env)
                code = 0
            else:
                code = main(argv)
        except SystemExit as e:
            code = e.code
        except NCSNError as e:
            code, _ = 2, print(f"ncsn: error: {e}", file=sys.stderr)
    return code, err.getvalue()


# ncsn's own bookkeeping: the workdir lock (released, but the empty file stays)
_BOOKKEEPING = (".ncsn-lock",)


def _allowed(name: str, case: Case) -> bool:
    if Path(name).name in _BOOKKEEPING:
        return True
    return any(fnmatch.fnmatch(name, pat) or name.startswith(pat + "/") for pat in case.may_change)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=f"{c.cat}: {c.name}") for c in CASES],
)
def test_hostile(case: Case, shared_run: Path, tmp_path: Path, monkeypatch) -> None:
    if case.skip_root and os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    env = Env(shared_run, tmp_path)
    run_before = _snapshot(shared_run)
    if case.setup is not None:
        case.setup(env)
    argv = case.argv(env) if case.argv is not None else None  # builds the hostile files
    before = _snapshot(tmp_path)
    if case.patch is not None:
        case.patch(env, monkeypatch)
    code, err = _call(case, env, argv)
    monkeypatch.undo()
    lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip() and not _BAR.search(ln)]
    assert "Traceback" not in err, err
    if case.code is not None:
        assert code == case.code, f"exit {code}, expected {case.code}: {err}"
    if code != 0:
        assert 1 <= len(lines) <= 1 + case.extra_lines, f"{len(lines)} lines: {err}"
    assert case.match in (lines[-1] if lines else ""), err
    if argv and lines:
        _check_advice(lines[-1], argv)
    if case.check is not None:
        case.check(env, lines[-1] if lines else "")
    assert _snapshot(shared_run) == run_before, "the shared run was changed"
    after = _snapshot(tmp_path)
    lost = [f for f, h in before.items() if after.get(f) != h and not _allowed(f, case)]
    assert not lost, f"lost or changed: {lost}"
    if code != 0 and argv is not None:
        new = [f for f in after if f not in before and not _allowed(f, case)]
        assert not new, f"a failed command wrote {new}"


def test_the_pass_is_broad(capsys) -> None:
    cats = Counter(c.cat for c in CASES)
    expected = "config checkpoints workdirs signals devices data outputs inpainting eval toy"
    assert set(cats) == set(expected.split())
    assert len(CASES) >= 150 and min(cats.values()) >= 8, cats
    assert len({(c.cat, c.name) for c in CASES}) == len(CASES), "case names must be unique"
    with capsys.disabled():
        print("\nhostile pass, cases by category:\n" + tally())


if __name__ == "__main__":
    print(tally())
