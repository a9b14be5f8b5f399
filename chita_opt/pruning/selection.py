"""Choosing one damping for a whole run by held-out loss (``select_damping``).

The pipeline's ``damping="auto"`` chooses per stage inside the loop
(:mod:`chita_opt.pruning.damping`); this module keeps the older, coarser tool:
run the whole pruning once per candidate and keep the best run. It is what
``chita_opt.adapters.torch.select_damping`` returns, and it lets a user
compare candidates side by side.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .._validation import check_nonnegative
from .._warnings import warn
from ._checks import as_sequence
from .damping import Score, damping_grid
from .multistage import ModelValidityWarning, _move_message, _moved_too_far
from .report import PruneReport, by_damping_name

__all__ = ["DEFAULT_DAMPING_GRID", "DampingSelection", "relative_grid", "select_damping"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DampingSelection:
    """Outcome of :func:`select_damping`.

    Attributes
    ----------
    damping : float
        The damping with the lowest held-out score: the classification error
        when ``evaluate`` reports one (ties broken by the loss), else the loss.
    losses : dict
        Held-out loss for every damping tried.
    report : PruneReport
        The pruning run with the chosen damping.
    errors : dict or None
        Held-out classification error for every damping tried, when
        ``evaluate`` reports one.
    """

    damping: float
    losses: dict[float, float]
    report: PruneReport
    errors: dict[float, float] | None = None

    def __str__(self) -> str:
        errors = self.errors or {}
        rows = "\n".join(
            f"  damping {d:<10.3g} held-out loss {loss:.6g}"
            + (f"  error {errors[d]:.4f}" if d in errors else "")
            + ("  <- chosen" if d == self.damping else "")
            for d, loss in self.losses.items()
        )
        return f"DampingSelection(damping={self.damping:g})\n{rows}"


DEFAULT_DAMPING_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def relative_grid(scale: float) -> tuple[float, ...]:
    """The adapters' ``select_damping`` candidates: ``scale * 10^{+1,-1,-3,-5,-7}``.

    ``scale`` is the Fisher's own scale ``lambda_0`` at the weights being pruned
    (:func:`~chita_opt.pruning.damping.fisher_scale`). An absolute grid such as
    :data:`DEFAULT_DAMPING_GRID` is a different amount of regularisation on every
    model (``lambda_0`` spans 8.8e-9 .. 5.4e-3 across the model zoo); the best
    fixed damping of the zoo's rows lay between ``10^{+1}`` and ``10^{-8}``
    ``lambda_0`` (docs/benchmarks_zoo.md), one point every two decades here.
    """
    return tuple(float(d) for d in damping_grid(scale=scale, n_points=5, decades=8.0, top=1.0))


def select_damping(
    run: Callable[[float], PruneReport],
    evaluate: Callable[[PruneReport], float | Score],
    grid: Sequence[float] = DEFAULT_DAMPING_GRID,
) -> DampingSelection:
    """Pick the damping whose pruned weights score best on held-out data.

    The quadratic model's objective is not a reliable guide (a very small
    damping lets the model overfit its n gradient rows, see the docs): the
    choice is made on the network's loss on data not used for the gradients.

    Parameters
    ----------
    run : callable ``damping -> PruneReport``
        Prunes (without touching the caller's model) with one damping.
    evaluate : callable ``PruneReport -> float`` or ``PruneReport -> Score``
        Held-out loss of the report's ``weights``, or a
        :class:`~chita_opt.pruning.damping.Score` (what the adapters'
        ``evaluate`` returns): with a classification error the candidates are
        ranked by ``Score.key()`` -- the error, ties broken by the loss --
        as ``damping="auto"`` ranks them (the loss alone chose badly on
        networks the pruning breaks: docs/benchmarks_zoo.md).
    grid : sequence of float
        Dampings to try (non-negative).
    """
    values = [check_nonnegative(d, "grid") for d in as_sequence(grid, "grid")]
    if not values:
        raise ValueError("grid: expected at least one damping, got an empty sequence")
    losses: dict[float, float] = {}
    errors: dict[float, float] = {}
    best: tuple[float, tuple[float, ...], PruneReport] | None = None
    for d in values:
        with warnings.catch_warnings():
            # Candidates that move too far are what the held-out loss weeds out;
            # only the chosen one is worth a warning (below).
            warnings.simplefilter("ignore", ModelValidityWarning)
            rep = run(d)
        raw = evaluate(rep)
        score = raw if isinstance(raw, Score) else Score(loss=_as_loss(raw, d))
        key = score.key()
        losses[d] = score.loss
        if score.error is not None:
            errors[d] = score.error
        logger.info("damping %g: held-out score %s", d, key)
        if all(np.isfinite(key)) and (best is None or key < best[1]):
            best = (d, key, rep)
    if best is None:
        raise RuntimeError(
            f"select_damping: every damping gave a non-finite held-out score: losses {losses}"
            + (f", errors {errors}" if errors else "")
        )
    best[2].options["damping_losses"] = by_damping_name(losses)
    if errors:
        best[2].options["damping_errors"] = by_damping_name(errors)
    far = [r for r in best[2].stages if _moved_too_far(r, r.objective is not None)]
    if far:
        warn(_move_message(far[0], f"with the chosen damping {best[0]:g}, "),
             ModelValidityWarning)
    return DampingSelection(best[0], losses, best[2], errors or None)


def _as_loss(raw: object, damping: float) -> float:
    """``evaluate``'s float, or a TypeError that names it."""
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(
            f"evaluate: expected a float loss or a Score, got {raw!r} for damping {damping:g}"
        ) from None
