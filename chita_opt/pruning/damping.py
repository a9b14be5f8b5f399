"""Choosing the damping from the data: a scale-aware grid searched on held-out samples.

The damping ``lambda`` is the ridge added to the empirical Fisher
``G^T G / n``; how much ridge is "a lot" depends on the Fisher's own scale,
which moves over many decades from model to model (gradients of a network
trained to convergence are tiny). So candidates are multiples of
:func:`fisher_scale` -- the mean diagonal of ``G^T G / n`` -- and the pruned
network is judged on held-out samples (forward passes only) -- by its
classification error when the adapter can tell (PyTorch, integer targets),
then by its loss -- never by the quadratic model's objective, which a small
damping lets overfit the ``n`` gradient rows. Infinite damping (magnitude
pruning) is always a candidate, so the choice is never worse than magnitude
pruning on the held-out samples.

:class:`DampingSearch` lists the candidates of one stage: a log grid at the
first stage, at later stages of CHITA++ the neighbours of the previous
stage's choice (relative to the new scale). The stage loop
(:mod:`chita_opt.pruning.stages`) scores them and keeps the best
(:func:`best_of`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_RELATIVE_GRID", "MAGNITUDE", "DampingSearch", "Score", "best_of",
           "fisher_scale"]

logger = logging.getLogger(__name__)

#: First-stage candidates, as multiples of :func:`fisher_scale`: six decades,
#: one point every two (measured on the model zoo, docs/benchmarks_zoo.md).
DEFAULT_RELATIVE_GRID: tuple[float, ...] = (1e-1, 1e-3, 1e-5, 1e-7)

#: Later stages try the previous choice times these factors, then follow the
#: score for at most MAX_EXTENSIONS more steps when the best is at an edge.
LOCAL_FACTORS: tuple[float, ...] = (1e-2, 1.0, 1e2)
MAX_EXTENSIONS = 2

#: Held-out losses within this relative margin of the lowest count as ties,
#: and ties go to the larger damping: where the loss cannot tell candidates
#: apart (early CHITA++ stages at low sparsity) the conservative choice keeps
#: the weights near the trained ones and later stages free to go lower.
TIE_MARGIN = 1e-3

#: The infinite damping: magnitude pruning (the kept weights keep their
#: values). Always a candidate, so the choice is never worse than magnitude
#: pruning on the held-out samples.
MAGNITUDE = math.inf


@dataclass(frozen=True)
class Score:
    """Held-out evaluation of a pruned network: classification error (if known), then loss."""

    loss: float
    error: float | None = None

    @classmethod
    def failed(cls) -> Score:
        return cls(math.inf, math.inf)

    def key(self) -> tuple[float, float]:
        """Sort key: error first (0 when unknown), then loss."""
        return (self.error if self.error is not None else 0.0, self.loss)


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


def best_of(scores: dict[float, Score], count: int) -> list[float]:
    """The ``count`` best dampings, best first.

    Lower held-out error first (when known), then lower loss; losses within
    :data:`TIE_MARGIN` of each other count as equal and the larger damping
    wins the tie. Candidates with a non-finite loss come last.
    """
    if not scores:
        raise ValueError("damping: no candidate was evaluated")
    finite = {d: v for d, v in scores.items() if math.isfinite(v.loss)}
    if not finite:
        raise RuntimeError(
            f"damping: every candidate gave a non-finite held-out loss: "
            f"{ {d: v.loss for d, v in scores.items()} }; check loss_fn and the data"
        )
    order: list[float] = []
    rest = dict(finite)
    while rest and len(order) < count:
        low_err = min(v.key()[0] for v in rest.values())
        same = {d: v for d, v in rest.items() if v.key()[0] == low_err}
        low = min(v.loss for v in same.values())
        pick = max(d for d, v in same.items() if v.loss <= low + TIE_MARGIN * abs(low))
        order.append(pick)
        del rest[pick]
    return order


@dataclass
class DampingSearch:
    """Held-out search of the damping, stage after stage.

    Parameters
    ----------
    absolute : sequence of float, optional
        The user's candidates (``damping_grid``): tried as given at every stage.
    relative : sequence of float
        First-stage candidates as multiples of the Fisher scale.
    """

    absolute: Sequence[float] | None = None
    relative: Sequence[float] = DEFAULT_RELATIVE_GRID
    previous: float | None = field(default=None, init=False)  # relative choice of the last stage
    _scale: float = field(default=1.0, init=False)

    def run(self, score_at: Callable[[float], Score], scale: float | None) -> None:
        """Evaluate the stage's candidates through ``score_at(damping)`` (results kept there)."""
        if self.absolute is not None:
            for d in sorted(self.absolute, reverse=True):
                score_at(d)
            return
        s = self._scale = 1.0 if scale is None else scale
        score_at(MAGNITUDE)
        if self.previous is None:
            for r in sorted(self.relative, reverse=True):
                score_at(r * s)
            return
        seen = {r: score_at(r * s) for r in sorted(
            (self.previous * f for f in LOCAL_FACTORS), reverse=True)}
        # Follow the score while the best is at an edge of the window.
        step = LOCAL_FACTORS[-1]
        lo, hi = min(self.relative) / step, max(self.relative) * step
        for _ in range(MAX_EXTENSIONS):
            best = best_of(seen, 1)[0]
            if best == max(seen) and best * step <= hi:
                nxt = best * step
            elif best == min(seen) and best / step >= lo:
                nxt = best / step
            else:
                break
            seen[nxt] = score_at(nxt * s)

    def accept(self, damping: float) -> None:
        """Record the stage's final choice; later stages search around it."""
        if math.isinf(damping):
            self.previous = max(self.relative)
        elif self.absolute is None:
            self.previous = damping / self._scale
        logger.info("damping: chose %g (Fisher scale %.3g)", damping, self._scale)
