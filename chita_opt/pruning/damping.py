"""Choosing the damping from the data: a scale-aware grid searched by held-out loss.

The damping ``lambda`` is the ridge added to the empirical Fisher
``G^T G / n``; how much ridge is "a lot" depends on the Fisher's own scale,
which moves over many decades from model to model (gradients of a network
trained to convergence are tiny). So candidates are multiples of
:func:`fisher_scale` -- the mean diagonal of ``G^T G / n`` -- and the pruned
network is judged by its true loss on held-out samples (forward passes only),
never by the quadratic model's objective, which a small damping lets overfit
the ``n`` gradient rows.

:class:`DampingSearch` runs the search of one stage: a coarse log grid at the
first stage, refined around its best point; at later stages of CHITA++ only
the neighbours of the previous stage's choice (relative to the new scale).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_RELATIVE_GRID", "DampingSearch", "fisher_scale"]

logger = logging.getLogger(__name__)

#: First-stage candidates, as multiples of :func:`fisher_scale`: ten decades
#: every two, refined to one decade around the best. The largest is close to
#: magnitude pruning (a huge ridge keeps the kept weights where they were), so
#: the choice can fall back on it where the quadratic model does not hold.
DEFAULT_RELATIVE_GRID: tuple[float, ...] = tuple(10.0**e for e in range(-8, 3, 2))

#: Later stages try the previous choice times these factors, then follow the
#: loss for at most MAX_EXTENSIONS more decades when the best is at an edge.
LOCAL_FACTORS: tuple[float, ...] = (0.1, 1.0, 10.0)
MAX_EXTENSIONS = 3

#: Held-out losses within this relative margin of the lowest count as ties,
#: and ties go to the larger damping: where the loss cannot tell candidates
#: apart (early CHITA++ stages at low sparsity) the conservative choice keeps
#: the weights near the trained ones and later stages free to go lower.
TIE_MARGIN = 1e-3


def fisher_scale(G: np.ndarray | None) -> float:
    """Mean diagonal of ``G^T G / n`` (the Fisher's scale); 1.0 when ``G`` is all zeros."""
    if G is None or G.size == 0:
        return 1.0
    n, q = G.shape
    total = 0.0
    for start in range(0, n, 256):  # float64 accumulation without a float64 copy of G
        total += float(np.square(G[start : start + 256], dtype=np.float64).sum())
    scale = total / (n * q)
    return scale if scale > 0 and math.isfinite(scale) else 1.0


@dataclass
class DampingSearch:
    """Held-out search of the damping, stage after stage.

    Parameters
    ----------
    absolute : sequence of float, optional
        The user's candidates (``damping_grid``): tried as given at every stage.
    relative : sequence of float
        First-stage candidates as multiples of the Fisher scale.
    refine : int
        Refinement rounds after the coarse grid: each tries the two log-midpoints
        around the best point so far.
    """

    absolute: Sequence[float] | None = None
    relative: Sequence[float] = DEFAULT_RELATIVE_GRID
    refine: int = 1
    previous: float | None = field(default=None, init=False)  # relative choice of the last stage

    def run(self, loss_at: Callable[[float], float], scale: float | None) -> float:
        """The damping with the lowest ``loss_at(damping)`` (ties: the larger, see TIE_MARGIN)."""
        if self.absolute is not None:
            return _best({d: loss_at(d) for d in sorted(self.absolute, reverse=True)})
        s = 1.0 if scale is None else scale
        if self.previous is None:
            grid = sorted(self.relative, reverse=True)
            losses = {r: loss_at(r * s) for r in grid}
            step = _log_step(grid)
            for _ in range(self.refine if step else 0):
                best = _best(losses)
                step /= 2
                for r in (best * 10**step, best / 10**step):
                    if r not in losses:
                        losses[r] = loss_at(r * s)
        else:
            losses = {r: loss_at(r * s) for r in sorted(
                (self.previous * f for f in LOCAL_FACTORS), reverse=True)}
            # Follow the loss downhill while the best is at an edge of the window.
            lo, hi = min(self.relative), max(self.relative)
            for _ in range(MAX_EXTENSIONS):
                best = _best(losses)
                if best == max(losses) and best * 10 <= hi:
                    nxt = best * 10
                elif best == min(losses) and best / 10 >= lo:
                    nxt = best / 10
                else:
                    break
                losses[nxt] = loss_at(nxt * s)
        chosen = _best(losses)
        self.previous = chosen
        logger.info("damping: chose %g (x Fisher scale %.3g) from %s", chosen * s, s, losses)
        return chosen * s


def _log_step(grid: Sequence[float]) -> float:
    """Decades between neighbouring grid points (0 for a single point)."""
    logs = sorted(math.log10(g) for g in grid if g > 0)
    return min((b - a for a, b in itertools.pairwise(logs)), default=0.0)


def _best(losses: dict[float, float]) -> float:
    finite = {d: v for d, v in losses.items() if math.isfinite(v)}
    if not finite:
        raise RuntimeError(
            f"damping: every candidate gave a non-finite held-out loss: {losses}; check "
            "loss_fn and the data"
        )
    low = min(finite.values())
    return max(d for d, v in finite.items() if v <= low + TIE_MARGIN * abs(low))
