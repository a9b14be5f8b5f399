"""``chita-opt solve``: solve your own problem from files and write the solution.

Example::

    chita-opt solve data.npz --k 10 --output w.json
    chita-opt solve --A A.csv --y y.csv --sparsity 0.9 --l2 0.1 --method iht

The data file (positional) is an ``.npz`` with arrays named ``A``, ``y`` and
optionally ``w_bar``, ``c``; ``--A``/``--y``/``--w-bar``/``--c`` give (or
override) single arrays from ``.npy``, ``.npz`` (the array of that name, or
the only one) or ``.csv`` (comma separated, an optional header line) files.
Exit status: 0 solved, 1 a file error or a failed solve (status "error",
"unbounded" or "infeasible"), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._common import FileError, UsageError, float_in, int_in

__all__ = ["add_arguments", "load_arrays", "run"]

OUTPUT_SUFFIXES = (".npz", ".json")
_ARRAYS = ("A", "y", "w_bar", "c")


def _output_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"expected a file name ending in {' or '.join(OUTPUT_SUFFIXES)}, got {text!r}"
        )
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..solvers import available_methods

    parser.add_argument("data", nargs="?", default=None, metavar="DATA.npz",
                        help="an .npz file with arrays named A, y and optionally w_bar, c")
    parser.add_argument("--A", dest="A", metavar="FILE", help="design matrix A (n x p)")
    parser.add_argument("--y", dest="y", metavar="FILE", help="response y (length n)")
    parser.add_argument("--w-bar", dest="w_bar", metavar="FILE",
                        help="ridge centre w_bar (length p; default zeros)")
    parser.add_argument("--c", dest="c", metavar="FILE", help="linear term c (length p)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--k", type=int_in(0), help="non-zeros allowed, in [0, p]")
    budget.add_argument("--sparsity", type=float_in(0.0, 1.0),
                        help="fraction of zeros, in [0, 1): k = p - round(sparsity * p)")
    parser.add_argument("--l2", type=float_in(0.0), default=0.0,
                        help="ridge strength, >= 0 (default: %(default)s)")
    parser.add_argument("--method", default="chita", choices=available_methods(),
                        help="solver (default: %(default)s)")
    parser.add_argument("--time-limit", type=float_in(0.0, low_open=True), default=None,
                        metavar="SECONDS", help="time budget, for methods that take one (mip)")
    parser.add_argument("--output", type=_output_path, default=None, metavar="FILE",
                        help="write w and the summary to FILE (.npz or .json)")


# --------------------------------------------------------------------- input
@contextmanager
def _file_errors(path: str, option: str) -> Iterator[None]:
    """Turn every way reading ``path`` can fail into one :class:`FileError` line."""
    suffix = Path(path).suffix.lower()
    try:
        yield
    except FileNotFoundError:
        raise FileError(f"{option}: cannot read {path!r}: no such file") from None
    except OSError as exc:
        raise FileError(f"{option}: cannot read {path!r}: {exc.strerror or exc}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).split(". ")[0].strip().rstrip(".")
        if "pickled" in reason:  # numpy's guess for bytes it does not recognise
            reason = "not written by numpy.save / numpy.savez, or holds Python objects"
        raise FileError(f"{option}: {path!r} is not a valid {suffix} file ({reason})") from None


def _read(path: str, name: str, option: str) -> np.ndarray:
    """One array from ``path`` (an .npz: the array ``name``, or its only array)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise FileError(f"{option}: expected a .npy, .npz or .csv file, got {path!r}")
    if suffix == ".csv":
        with _file_errors(path, option):
            return _read_csv(path)
    named = _read_npz(path, option) if suffix == ".npz" else None
    if named is None:
        with _file_errors(path, option), open(path, "rb") as fh:
            return np.asarray(np.load(fh, allow_pickle=False))
    if name in named:
        return named[name]
    if len(named) == 1:
        return next(iter(named.values()))
    raise FileError(f"{option}: expected an array named {name!r} in {path!r}, got {list(named)}")


def _read_npz(path: str, option: str) -> dict[str, np.ndarray]:
    with _file_errors(path, option), open(path, "rb") as fh:
        obj = np.load(fh, allow_pickle=False)
        if not isinstance(obj, np.lib.npyio.NpzFile):  # an .npy under an .npz name
            raise ValueError("it holds a single array, not named arrays")
        with obj:
            return {key: np.asarray(obj[key]) for key in obj.keys()}


def _read_csv(path: str) -> np.ndarray:
    try:
        return np.loadtxt(path, delimiter=",", ndmin=1)
    except ValueError:
        # A header line ("a1,a2,..."): skip it; a second failure is the real error.
        return np.loadtxt(path, delimiter=",", ndmin=1, skiprows=1)


def _as_vector(arr: np.ndarray, option: str) -> np.ndarray:
    """A column or a row (as CSV files hold vectors) flattened to 1-D."""
    if arr.ndim == 2 and 1 in arr.shape:
        return arr.ravel()
    if arr.ndim != 1:
        raise FileError(f"{option}: expected a vector, got an array of shape {arr.shape}")
    return arr


def load_arrays(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """A, y and the optional w_bar, c from the data file and the per-array options."""
    arrays: dict[str, np.ndarray] = {}
    if args.data is not None:
        if Path(args.data).suffix.lower() != ".npz":
            raise UsageError(
                f"argument DATA: expected an .npz file with named arrays, got {args.data!r} "
                "(give single arrays with --A and --y)"
            )
        named = _read_npz(args.data, "DATA")
        arrays.update({key: value for key, value in named.items() if key in _ARRAYS})
    for name in _ARRAYS:
        path = getattr(args, name)
        option = "--" + name.replace("_", "-")
        if path is not None:
            arrays[name] = _read(path, name, option)
    for name in ("A", "y"):
        if name not in arrays:
            raise UsageError(
                f"argument --{name}: expected a file, or DATA.npz holding an array {name!r}; "
                "got neither"
            )
    if arrays["A"].ndim == 1:  # one column, as a CSV of n numbers reads
        arrays["A"] = arrays["A"][:, None]
    if arrays["A"].ndim != 2:
        raise FileError(f"--A: expected a 2-D array (n x p), got shape {arrays['A'].shape}")
    for name in ("y", "w_bar", "c"):
        if name in arrays:
            arrays[name] = _as_vector(arrays[name], "--" + name.replace("_", "-"))
    return arrays


# ------------------------------------------------------------------------ run
def run(args: argparse.Namespace) -> int:
    from ..problem import L0Problem, k_from_sparsity
    from ..reference import EXACT_METHODS
    from ..result import Status
    from ..solvers import solve

    if args.output is not None:
        _check_writable(args.output)
    arrays = load_arrays(args)
    p = arrays["A"].shape[1]
    k = args.k if args.k is not None else k_from_sparsity(p, args.sparsity)
    if k > p:
        raise UsageError(f"argument --k: expected an integer in [0, p={p}], got {k}")
    try:
        problem = L0Problem(arrays["A"], arrays["y"], k, l2=args.l2,
                            w_bar=arrays.get("w_bar"), c=arrays.get("c"))
    except (ValueError, TypeError) as exc:  # shapes, dtypes, NaN in the files' contents
        raise FileError(f"the data files do not make a problem: {exc}") from None
    options: dict[str, Any] = {}
    if args.time_limit is not None:
        options["time_limit"] = args.time_limit
    try:
        sol = solve(problem, method=args.method, **options)
    except TypeError as exc:
        if options and "does not accept option" in str(exc):
            raise UsageError(
                f"argument --time-limit: method {args.method!r} does not take a time limit"
            ) from None
        raise
    except (ValueError, ImportError) as exc:
        # Only the exact references refuse problems (brute force's size limit,
        # unscalable data) or need extras (cvxpy); from a heuristic it is a bug.
        if args.method not in EXACT_METHODS:
            raise
        msg = f"argument --method: {args.method!r} cannot solve this problem: {exc}"
        raise UsageError(msg) from None
    summary = _summary(sol, problem)
    for key, value in summary.items():
        print(f"{key + ':':13s} {_fmt(value)}")
    if args.output is not None:
        _write(args.output, sol, summary)
        print(f"wrote {args.output}")
    return 1 if Status(sol.status).is_failure else 0


def _summary(sol: Any, problem: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": str(sol.status),
        "objective": float(sol.objective),
        "nnz": int(sol.support.size),
        "k": int(problem.k),
        "n": int(problem.n),
        "p": int(problem.p),
        "l2": float(problem.l2),
        "method": sol.method,
        "time_s": float(sol.time),
    }
    if sol.lower_bound is not None:
        out["lower_bound"] = float(sol.lower_bound)
        out["gap"] = float(sol.gap)
    out["message"] = sol.message
    return out


def _fmt(value: Any) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)


# -------------------------------------------------------------------- output
def _check_writable(path: Path) -> None:
    """Refuse before solving (a long solve must not end in an unwritable path)."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise FileError(f"--output: {str(path)!r} is a directory")
    if not parent.is_dir():
        raise FileError(f"--output: cannot write {str(path)!r}: no such directory {str(parent)!r}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FileError(f"--output: cannot write {str(path)!r}: permission denied")


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or inf: they are written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(path: Path, sol: Any, summary: dict[str, Any]) -> None:
    try:
        if path.suffix.lower() == ".json":
            doc = {key: _json_safe(v) for key, v in summary.items()}
            doc["support"] = sol.support.tolist()
            doc["w"] = [_json_safe(float(v)) for v in sol.w]
            path.write_text(json.dumps(doc, indent=1) + "\n")
        else:
            with open(path, "wb") as fh:
                np.savez(fh, w=sol.w, support=sol.support,
                         **{key: np.asarray(v) for key, v in summary.items()})
    except OSError as exc:
        raise FileError(f"--output: cannot write {str(path)!r}: {exc.strerror or exc}") from None
