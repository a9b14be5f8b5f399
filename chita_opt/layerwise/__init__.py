"""Layer-wise pruning: one layer's reconstruction problem in its Gram matrix H = X^T X.

    from chita_opt.layerwise import Budget, solve_layer
    sol = solve_layer(H, W_bar, Budget.nm(2, 4), damping=1e-2 * np.diag(H).mean())

See :mod:`chita_opt.layerwise.problem` for the problem and budgets and
:mod:`chita_opt.layerwise.solve` for the algorithms. Numpy only: torch is
imported only for the optional ``solve_layer(..., device=...)`` (:mod:`._linalg`).
"""

from .problem import Budget, LayerProblem, budget_from_sparsity
from .solve import LAYER_METHODS, LayerSolution, solve_layer

__all__ = [
    "LAYER_METHODS",
    "Budget",
    "LayerProblem",
    "LayerSolution",
    "budget_from_sparsity",
    "solve_layer",
]
