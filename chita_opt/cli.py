"""The ``chita-opt`` command line.

Each subcommand lives in its own module under ``chita_opt._cli`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports (torch,
cvxpy) happen inside ``run`` only, so building the parser stays light.

Errors follow argparse's conventions (see ``docs/cli.md``): a bad option value
exits with status 2 (usage line and one ``error:`` line on stderr), a file
that cannot be read or written with status 1 (one line on stderr); never a
traceback. ``chita-opt`` with no subcommand prints the help.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "chita_opt._cli.demo",
        "train MLPNet on the bundled MNIST digits and compare magnitude, CHITA and CHITA++ pruning",
    ),
    "solve": (
        "chita_opt._cli.solve",
        "solve your own problem: A and y from .npy / .npz / .csv files, the solution to a file",
    ),
    "compare": (
        "chita_opt._cli.compare",
        "solve a built-in sparse-regression problem with every method and print a table",
    ),
    "validate": (
        "chita_opt._cli.validate",
        "compare methods against the certified exact optimum on generated problems",
    ),
    "prune-lm": ("chita_opt._cli.prune_lm", "prune a Hugging Face causal LM layer-wise"),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="chita-opt",
        description="L0-constrained least squares and CHITA neural-network pruning.",
    )
    parser.add_argument("--version", action="version", version=f"chita_opt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module_name, _parser=sp)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sp.set_defaults(_missing=True)
            continue
        module.add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chita-opt`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "_missing", False):
        parser.error(f"subcommand {args.command!r} is not available in this installation")
    from ._cli._common import FileError, UsageError

    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UsageError as exc:
        args._parser.error(str(exc))  # exits with status 2
    except FileError as exc:
        print(f"chita-opt {args.command}: error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError("unreachable")  # pragma: no cover (parser.error exits)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
