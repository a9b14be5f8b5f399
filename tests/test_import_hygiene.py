"""`import chita_opt` must not pull in torch, jax or cvxpy."""

import subprocess
import sys

HEAVY = ("torch", "jax", "jaxlib", "cvxpy", "pyscipopt", "flax", "dask", "matplotlib")


def test_import_does_not_load_frameworks():
    code = (
        "import sys, chita_opt, chita_opt.cli\n"
        "import chita_opt.solvers, chita_opt.problem, chita_opt.result, chita_opt.layerwise\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import chita_opt loaded: {out.stdout.strip()}"


def test_cli_parser_does_not_load_frameworks():
    code = (
        "import sys\n"
        "from chita_opt.cli import build_parser\n"
        "build_parser()\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"building the CLI parser loaded: {out.stdout.strip()}"
