"""What the subcommands share: the two kinds of CLI error and argument types.

Conventions (``docs/cli.md``): a usage error (a bad option value) exits with
status 2 through argparse's ``parser.error`` -- the usage line and one
``error:`` line on stderr; a file error (missing, unreadable, corrupt,
unwritable) prints one ``chita-opt <command>: error: ...`` line on stderr and
exits with status 1. Neither prints a traceback. Subcommands raise
:class:`UsageError` / :class:`FileError` and :func:`chita_opt.cli.main` turns
them into those exits, so ``run(args)`` stays testable in-process.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["FileError", "UsageError", "float_in", "int_in", "method_list"]


class UsageError(Exception):
    """A bad argument value found after parsing (exit status 2)."""


class FileError(Exception):
    """A file that cannot be read, parsed or written (exit status 1)."""


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in ``[low, high]`` (``high=None``: no upper limit)."""
    what = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def float_in(
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
    allow_inf: bool = False,
) -> Callable[[str], float]:
    """argparse type: a number in the interval (NaN always refused; inf only if allowed)."""
    left = "(" if low_open else "["
    right = ")" if high_open and not allow_inf else "]"
    what = f"a number in {left}{low:g}, {high:g}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        ok = not math.isnan(value) and (allow_inf or math.isfinite(value))
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open and not math.isinf(value) else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def method_list(allowed: list[str]) -> Callable[[str], list[str]]:
    """argparse type: comma-separated method names, each one of ``allowed``."""

    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated names from {', '.join(allowed)}, got {text!r}"
            )
        return list(dict.fromkeys(names))

    parse.__name__ = "method list"
    return parse
