"""What a framework adapter provides to the pruning pipeline.

The pipeline (:mod:`chita_opt.pruning.pipeline`) owns everything that is not
framework code: the configuration, drawing samples, damping selection, the
stage and block loops and the report. An adapter implements this protocol for
one framework (see ``chita_opt/adapters/torch`` and ``chita_opt/adapters/jax``)
and nothing else; docs/architecture.md shows how to add one.

Samples are opaque to the pipeline: a "batch" is whatever the adapter's
``batches`` yields (for example a pair of tensors ``(inputs, targets)``); the
pipeline only counts, indexes and concatenates them through the adapter.

Optional: an adapter that re-estimates statistics at the pruned weights from
the gradient samples (the PyTorch adapter's BatchNorm) sets
``wants_calibration`` True and provides ``calibrate(samples)``; the pipeline
then hands it samples also for methods that compute no gradients.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .damping import Score
from .layout import ParamLayout

__all__ = ["FrameworkAdapter"]


@runtime_checkable
class FrameworkAdapter(Protocol):
    """The framework code the pipeline calls; every method works on flat numpy weights."""

    #: Name recorded in the report (``"torch"``, ``"jax"``).
    framework: str
    #: Names and shapes of the selected tensors, in flat-vector order.
    layout: ParamLayout
    #: Axis of a weight tensor that indexes outputs: 0 for ``(out, in, ...)``
    #: (PyTorch), -1 for ``(..., in, out)`` (Flax); N:M groups run along the others.
    output_axis: int

    def flat_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The selected weights as one float64 vector and the start mask (bool, True = alive)."""
        ...

    # ------------------------------------------------------------------- data
    def batches(self, data: Any) -> Iterator[Any]:
        """Validated, non-empty batches of ``data`` (clear errors on bad forms)."""
        ...

    def as_samples(self, data: Any) -> Any | None:
        """``data`` as one batch when it is a pair of tensors/arrays (random access), else None."""
        ...

    def num_samples(self, batch: Any) -> int:
        """Number of samples in a batch."""
        ...

    def take(self, batch: Any, index: np.ndarray) -> Any:
        """The samples of ``batch`` at the integer positions ``index`` (in that order)."""
        ...

    def concat(self, batches: list[Any]) -> Any:
        """One batch holding the samples of ``batches`` in order."""
        ...

    # ------------------------------------------------------------------ model
    def gradient_rows(
        self, w: np.ndarray, columns: np.ndarray, samples: Any, mini_batch: int, out: np.ndarray
    ) -> None:
        """Fill ``out`` (n, columns.sum()) with gradient rows of the loss at weights ``w``.

        Row ``i`` is the gradient of the mean loss over samples
        ``i * mini_batch .. (i + 1) * mini_batch - 1`` of ``samples``, for the
        coordinates where the boolean ``columns`` is True. The model is not
        modified.
        """
        ...

    def evaluate(self, w: np.ndarray, batches: Iterable[Any]) -> Score:
        """Mean loss (sample-weighted) at weights ``w`` over ``batches``, and the
        classification error when the adapter can tell (else ``error=None``)."""
        ...

    def write(self, w: np.ndarray, mask: np.ndarray) -> Any:
        """Write pruned weights and masks back (in place or as new objects)."""
        ...
