"""The ``ncsn`` command: a thin, typed layer over the Python API.

One module per subcommand (``ncsn.cli.train``, ``sample``, ``inpaint``, ``eval``,
``import_official``, ``toy``, ``techniques``, ``configs``), each with ``add_arguments(parser)``
and ``run(args) -> exit code``; :mod:`ncsn.cli.args` holds the shared parser pieces. A
subcommand's module (and torch with it) is imported only when that subcommand is parsed, so
``ncsn --help`` stays cheap.

Every user error ends with one line on stderr (``ncsn: error: ...``) and a non-zero exit;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from types import ModuleType
from typing import Any

from ncsn.cli.args import HelpFormatter, Parser
from ncsn.errors import NCSNError, NCSNWarning

__all__ = ["COMMANDS", "HelpFormatter", "build_parser", "main", "subcommand_parsers"]

#: subcommand -> (its module under ncsn.cli, its one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a score network"),
    "sample": ("sample", "draw samples from a trained model"),
    "inpaint": ("inpaint", "fill in occluded images (the paper's Algorithm 2)"),
    "eval": ("eval", "evaluate a model: FID/IS/KID, domain metrics, DSM loss, NN"),
    "import-official": (
        "import_official",
        "turn an official NCSN/NCSNv2 checkpoint into an ncsn run folder",
    ),
    "toy": ("toy", "the paper's 2-D toy experiments (Figures 1-3)"),
    "techniques": ("techniques", "NCSNv2 rules: sigma_1, L and eps for a data set"),
    "configs": ("configs", "list the bundled configs"),
}


def command_module(name: str) -> ModuleType:
    """The module of subcommand ``name`` (imported on first use)."""
    return importlib.import_module(f"ncsn.cli.{COMMANDS[name][0]}")


class _Subcommands(argparse._SubParsersAction):
    """Subcommands whose options are added when one is chosen (``lazy``), else at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: set[str] = set()

    def add_command(self, name: str, lazy: bool) -> None:
        """Add subcommand ``name`` with its help; its options now unless ``lazy``."""
        self.add_parser(name, help=COMMANDS[name][1])
        self.pending.add(name)
        if not lazy:
            self.complete(name)

    def complete(self, name: str) -> None:
        """Add subcommand ``name``'s options (once), importing its module."""
        if name in self.pending:
            self.pending.discard(name)
            command_module(name).add_arguments(self.choices[name])

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: list[str],
        option_string: str | None = None,
    ) -> None:
        self.complete(values[0])  # argparse has checked that it is a subcommand
        super().__call__(parser, namespace, values, option_string)


def build_parser(lazy: bool = False) -> argparse.ArgumentParser:
    """The argument parser of ``ncsn``.

    Args:
        lazy: Add a subcommand's options (importing its module) only when it is parsed.
    """
    parser = Parser(prog="ncsn", description="Noise-conditional score networks (Song & Ermon 2019)")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, action=_Subcommands
    )
    for name in COMMANDS:
        sub.add_command(name, lazy)
    return parser


def subcommand_parsers(parser: argparse.ArgumentParser | None = None) -> dict[str, Parser]:
    """Each subcommand's parser by name (of ``parser``, default a complete new one)."""
    parser = parser or build_parser()
    return next(a for a in parser._actions if isinstance(a, _Subcommands)).choices


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown argument is reported by the subcommand's parser (and its --help)."""
    parser = build_parser(lazy=True)
    args, extra = parser.parse_known_args(argv)
    if extra:
        subcommand_parsers(parser)[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _one_line_warnings(command: str) -> None:
    """Warnings print as ``ncsn COMMAND: warning: MESSAGE``."""

    def one_line(message, category, *args, **kwargs) -> str:
        kind = "warning" if issubclass(category, NCSNWarning) else category.__name__
        return f"ncsn {command}: {kind}: {message}\n"

    warnings.formatwarning = one_line


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ncsn`` command; returns the exit code."""
    args = _parse(argv)
    _one_line_warnings(args.command)
    from ncsn.cli.common import resolve_device  # torch: only once a command runs

    try:
        args.device = resolve_device(args.device)  # an unusable --device: one line, no work
        return command_module(args.command).run(args)
    except NCSNError as e:
        if args.debug:
            raise
        if not getattr(e, "quiet", False):  # set on ranks > 0 repeating rank 0's error
            print(f"ncsn {args.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt as e:
        print(f"ncsn {args.command}: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except BrokenPipeError:  # the reader left (`ncsn configs | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, as a shell reports it
