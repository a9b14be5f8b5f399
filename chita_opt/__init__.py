"""chita_opt: L0-constrained least squares and optimization-based network pruning.

Solves

    min_w  1/2 ||y - A w||^2 + (l2/2) ||w - w_bar||^2 + c^T w   s.t.  ||w||_0 <= k

with Numba-accelerated IHT, active-set coordinate descent, swap local search and
exact backsolve (the CHITA method), plus exact references for validation.
Importing this package never imports torch, jax or cvxpy.
"""

from .problem import L0Problem, k_from_sparsity
from .result import ConvergenceWarning, Solution, Status
from .solvers import MethodInfo, available_methods, method_info, solve, solve_path

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "L0Problem",
    "MethodInfo",
    "Solution",
    "Status",
    "__version__",
    "available_methods",
    "k_from_sparsity",
    "method_info",
    "solve",
    "solve_path",
]
