"""Drawing gradient samples (and held-out samples) from the user's data, for every adapter.

One policy for every framework:

* **Tensors / arrays** ``(inputs, targets)``: samples are drawn at random,
  seeded by ``random_state``; a held-out share (when one is needed) is set
  aside once, and every stage draws fresh gradient samples from the rest.
* **Re-iterable data** (a DataLoader, a list of batches): read in its own
  order; every stage reads it again (a shuffling loader gives fresh samples);
  a held-out share is the tail of the first read.
* **One-shot iterators** (a generator, ``iter(loader)``): read once; the
  samples are kept and every stage reuses them.
* **Too little data**: with ``n_samples`` left at its default the rows shrink
  to what the data holds (logged); an explicit ``n_samples`` the data cannot
  supply is an error that says how many samples there were.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .config import DEFAULT_N_SAMPLES, PruneConfig
from .protocol import FrameworkAdapter

__all__ = ["SampleSource"]

logger = logging.getLogger(__name__)

_ONE_SHOT_HINT = (
    " (an iterator or generator can be read only once: pass a DataLoader, a list or a tuple "
    "of tensors/arrays to read fresh samples at every stage)"
)


class SampleSource:
    """Gradient samples per stage and held-out samples, drawn from ``data`` by the policy above.

    Parameters
    ----------
    adapter : FrameworkAdapter
        Provides the data primitives (validating batches, counting, indexing,
        concatenating samples).
    data : Any
        The user's data, in any form the adapter accepts.
    config : PruneConfig
        ``n_samples``, ``mini_batch``, ``random_state``, ``held_out_fraction``.
    hold_out : bool
        Set a share of the samples aside for held-out evaluation.
    """

    def __init__(
        self, adapter: FrameworkAdapter, data: Any, config: PruneConfig, *, hold_out: bool,
        purpose: str = "the gradients",
    ) -> None:
        self.adapter = adapter
        self.data = data
        self.purpose = purpose  # what the samples are for, in error messages
        self.m = config.mini_batch
        self.explicit = config.n_samples is not None
        self.n_rows = config.n_samples if config.n_samples is not None else DEFAULT_N_SAMPLES
        self.fraction = config.held_out_fraction if hold_out else 0.0
        self.seed = config.random_state
        self.rng = np.random.default_rng(config.random_state)
        self.held: Any = None
        self.read = 0  # samples read from data (first read)
        self._cached: Any = None  # gradient samples kept for every stage
        self._pool: np.ndarray | None = None  # arrays: indices gradient samples come from
        self._arrays = adapter.as_samples(data)
        self._one_shot = isinstance(data, Iterator)
        self.mode = (
            "random" if self._arrays is not None else "once" if self._one_shot else "in order"
        )
        self._first()

    # ------------------------------------------------------------------ setup
    def _held_target(self, gradient_samples: int) -> int:
        # the held-out share of what is read: f of the total, i.e. f/(1-f) of the rest
        f = self.fraction
        return math.ceil(gradient_samples * f / (1.0 - f)) if f > 0 else 0

    def _first(self) -> None:
        want = self.n_rows * self.m
        if self._arrays is not None:
            total = self.adapter.num_samples(self._arrays)
            order = self.rng.permutation(total)
            h = min(self._held_target(want), math.ceil(self.fraction * total))
            self._settle(total, h)
            self.held = self.adapter.take(self._arrays, np.sort(order[:h])) if h else None
            self._pool = order[h:]
            self.read = total
            return
        target = want + self._held_target(want)
        samples, total = self._read(target)
        h = self._held_target(want) if total >= target else math.ceil(self.fraction * total)
        self._settle(total, h)
        self.read = total
        if h:
            self.held = self.adapter.take(samples, np.arange(total - h, total))
        self._cached = self.adapter.take(samples, np.arange(self.n_rows * self.m))

    def _settle(self, total: int, h: int) -> None:
        """Fix the number of rows for ``total`` samples of which ``h`` are held out."""
        rows = (total - h) // self.m
        if rows >= self.n_rows:
            return
        if self.explicit or rows < 1:
            held = f" plus {h} held out to choose the damping" if h else ""
            hint = _ONE_SHOT_HINT if self._one_shot else ""
            alternatives = ", pass held_out= data or a fixed damping" if h else ""
            raise ValueError(
                f"data: expected at least n_samples * mini_batch = {self.n_rows} * {self.m} = "
                f"{self.n_rows * self.m} samples for {self.purpose}{held}, got {total} samples; "
                f"lower n_samples or mini_batch{alternatives}, or pass more data{hint}"
            )
        logger.info(
            "data: %d samples, %d held out: using %d gradient rows instead of %d",
            total, h, rows, self.n_rows,
        )
        self.n_rows = rows

    def _read(self, target: int) -> tuple[Any, int]:
        """Up to ``target`` samples from the start of ``data``, as one batch."""
        parts = []
        got = 0
        for batch in self.adapter.batches(self.data):
            size = self.adapter.num_samples(batch)
            if size > target - got:
                batch = self.adapter.take(batch, np.arange(target - got))
                size = target - got
            parts.append(batch)
            got += size
            if got >= target:
                break
        if not parts:
            hint = _ONE_SHOT_HINT if self._one_shot else ""
            raise ValueError(f"data: expected at least one (inputs, targets) batch, got none{hint}")
        return self.adapter.concat(parts), got

    # ---------------------------------------------------------------- per use
    def gradient_samples(self, stage: int) -> Any:
        """The ``n_rows * mini_batch`` samples of stage ``stage`` (1-based)."""
        need = self.n_rows * self.m
        if self._pool is not None:
            pick = self.rng.choice(self._pool, size=need, replace=False)
            return self.adapter.take(self._arrays, np.sort(pick))
        if stage == 1 or self._one_shot:
            return self._cached
        samples, got = self._read(need)
        if got < need:
            raise ValueError(
                f"data: stage {stage} read {got} samples, expected n_samples * mini_batch = "
                f"{need} (the data gave {self.read} samples at the first stage)"
            )
        return samples

    def describe(self) -> dict[str, Any]:
        """What was read, for the report."""
        out: dict[str, Any] = {
            "n_samples": self.n_rows,
            "mini_batch": self.m,
            "sampling": self.mode,
            "samples_read": self.read,
        }
        if self.mode == "random":
            out["random_state"] = self.seed
        if self.held is not None:
            out["held_out_samples"] = self.adapter.num_samples(self.held)
        return out
