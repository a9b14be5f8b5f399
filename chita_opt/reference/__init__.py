"""Exact reference solvers: support enumeration and the mixed-integer QP.

* :func:`brute_force` enumerates every support of size ``k`` (tiny ``p``).
* :func:`solve_mip` solves the mixed-integer formulation with SCIP through
  CVXPY and returns a certified lower bound and gap (needs the optional
  extra: ``pip install chita_opt[mip]``).

Both are also reachable as ``chita_opt.solve(..., method="brute_force")`` and
``method="mip"``. Importing this package does not import cvxpy.
"""

from __future__ import annotations

import importlib
from typing import Any

# The submodule and the function share the name ``brute_force``: importing the
# submodule binds the *module* as a package attribute, so the function is bound
# here, after that import, to win (the module is numpy-only and cheap).
from .brute_force import brute_force

__all__ = ["EXACT_METHODS", "brute_force", "solve_mip"]

#: The registry names of the exact references (``chita_opt.solve(..., method=...)``):
#: what tools that compare heuristics leave out of their defaults.
EXACT_METHODS = ("brute_force", "mip")

_EXPORTS = {
    "solve_mip": "chita_opt.reference.mip",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import chita_opt.reference` stays cheap and cvxpy-free
    # (the mip module imports cvxpy only when a problem is solved).
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        return getattr(module, name)
    raise AttributeError(f"module 'chita_opt.reference' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
