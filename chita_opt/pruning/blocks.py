"""The block approximation: prune blocks of weights independently.

The gradient matrix ``G`` (n x p) of a large network does not fit in memory,
and even when it does, one L0 problem over all p weights can be too slow. The
block approximation drops the cross-block terms of the quadratic model: the
weights are cut into blocks inside layers (:meth:`ParamLayout.blocks`), each
block gets its share of the global budget ``k`` from one global ranking
(:func:`block_budgets`), and every block is an independent, small L0 problem
(:func:`solve_block`). Blocks can run on any executor with a
``concurrent.futures``-style ``submit`` -- a ``ThreadPoolExecutor``, a
``ProcessPoolExecutor`` or a ``dask.distributed.Client`` -- so the same code
scales from one process to a cluster (:func:`solve_blocks`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import describe
from ..result import Status

__all__ = [
    "BlockResult",
    "BlockTask",
    "block_budgets",
    "solve_block",
    "solve_blocks",
    "worst_status",
]

logger = logging.getLogger(__name__)

def worst_status(statuses: Iterable[str]) -> str:
    """The most severe of several solver statuses (see :class:`chita_opt.Status`)."""
    return Status.worst(statuses)


def block_budgets(scores: np.ndarray, blocks: Sequence[tuple[int, int]], k: int) -> np.ndarray:
    """Each block's share of ``k`` from one global ranking.

    The ``k`` coordinates with the largest ``scores`` are selected globally
    (ties towards the smaller index); block ``b`` gets the number of selected
    coordinates inside it, so the budgets add up to exactly ``k``.

    Parameters
    ----------
    scores : ndarray, shape (q,)
        Ranking score of every coordinate (e.g. ``|w|``).
    blocks : sequence of (start, stop)
        Contiguous, disjoint blocks covering ``[0, q)``.
    k : int
        Global budget, ``0 <= k <= q``.
    """
    from ..solvers._common import top_k

    scores = np.asarray(scores, dtype=np.float64)
    q = scores.shape[0]
    if not 0 <= k <= q:
        raise ValueError(f"k: expected an integer in [0, {q}], got {k}")
    keep = np.zeros(q, dtype=np.int64)
    keep[top_k(scores, int(k))] = 1
    csum = np.concatenate([[0], np.cumsum(keep)])
    starts = np.array([b[0] for b in blocks], dtype=np.int64)
    stops = np.array([b[1] for b in blocks], dtype=np.int64)
    budgets = csum[stops] - csum[starts]
    if int(budgets.sum()) != k:
        raise ValueError(
            f"blocks: expected disjoint blocks covering [0, {q}), got {len(blocks)} blocks "
            f"covering {int((stops - starts).sum())} coordinates"
        )
    return budgets


@dataclass(frozen=True)
class BlockTask:
    """One block's pruning problem, self-contained so it can be shipped to a worker.

    ``A`` holds the block's gradient columns (n x b, C-contiguous), ``w_bar``
    its current weights and ``k`` its budget; the other fields are passed to
    :meth:`~chita_opt.L0Problem.from_gradients` and :func:`~chita_opt.solve`.
    ``start``/``stop`` locate the block in the caller's coordinate space.
    """

    start: int
    stop: int
    A: np.ndarray = field(repr=False)
    w_bar: np.ndarray = field(repr=False)
    k: int
    damping: float = 1e-3
    first_order: bool = False
    first_order_scale: float = 1.0
    method: str = "chita"
    options: dict[str, Any] = field(default_factory=dict)
    #: group caps of the block (N:M patterns): group id per column, cap per group
    groups: np.ndarray | None = field(default=None, repr=False)
    group_k: int | None = None


@dataclass(frozen=True)
class BlockResult:
    """The solution of one block: weights, objective, solver status and time."""

    start: int
    stop: int
    w: np.ndarray = field(repr=False)
    objective: float
    status: str
    message: str = ""
    time: float = 0.0
    n_iter: int = 0


def solve_block(task: BlockTask) -> BlockResult:
    """Build and solve one block's L0 problem (runs in any process: imports only numpy code)."""
    from ..problem import L0Problem
    from ..solvers import solve
    from ..solvers._common import Stopwatch

    clock = Stopwatch()
    problem = L0Problem.from_gradients(
        task.A,
        task.w_bar,
        k=int(task.k),
        damping=task.damping,
        first_order=task.first_order,
        first_order_scale=task.first_order_scale,
    )
    if task.groups is not None:
        problem = problem.replace(groups=task.groups, group_k=task.group_k)
    if task.k == 0:
        w = np.zeros(problem.p)
        return BlockResult(
            task.start, task.stop, w, problem.objective(w), "optimal", "nothing kept", clock.elapsed
        )
    sol = solve(problem, method=task.method, **task.options)
    return BlockResult(
        task.start,
        task.stop,
        np.array(sol.w),
        float(sol.objective),
        sol.status,
        sol.message,
        clock.elapsed,
        sol.n_iter,
    )


def solve_blocks(
    tasks: Iterable[BlockTask],
    *,
    executor: Any = None,
    total: int | None = None,
    progress: bool = False,
    desc: str = "blocks",
) -> list[BlockResult]:
    """Solve blocks, in this process or on an executor; results in task order.

    Parameters
    ----------
    tasks : iterable of BlockTask
        May be a generator: in-process, each block's data is built only when
        it is solved, so at most one block copy is alive at a time.
    executor : object with ``submit(fn, *args) -> future``, optional
        ``concurrent.futures`` executors and ``dask.distributed.Client`` both
        work (a future needs ``.result()``). ``None`` solves in this process.
    total : int, optional
        Number of tasks, for the progress bar.
    progress : bool
        Show a progress bar over blocks.
    """
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "executor: expected an object with a submit(fn, *args) method "
            f"(concurrent.futures.Executor, dask.distributed.Client), got {describe(executor)}"
        )
    bar = _progress(total, progress, desc)
    try:
        if executor is None:
            out = []
            for task in tasks:
                out.append(solve_block(task))
                bar.update(1)
            return out
        futures = [executor.submit(solve_block, task) for task in tasks]
        results = []
        for fut in futures:
            results.append(fut.result())
            bar.update(1)
        return results
    finally:
        bar.close()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


def _progress(total: int | None, enabled: bool, desc: str, leave: bool = False) -> Any:
    """A tqdm bar when asked for and available (tqdm is an optional dependency)."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the torch extra
        return _NoBar()
    return tqdm(total=total, desc=desc, leave=leave)


def iter_block_tasks(
    G: np.ndarray,
    w: np.ndarray,
    blocks: Sequence[tuple[int, int]],
    budgets: Sequence[int],
    *,
    offset: int = 0,
    groups: np.ndarray | None = None,
    **fields: Any,
) -> Iterator[BlockTask]:
    """Tasks for blocks given as column ranges of ``G`` (shifted by ``offset`` in ``w``).

    ``groups`` (group id per coordinate of ``w``, with ``group_k`` in
    ``fields``) gives every block the caps of the groups inside it.
    """
    for (start, stop), kb in zip(blocks, budgets, strict=True):
        a, b = start - offset, stop - offset
        yield BlockTask(
            start=start,
            stop=stop,
            A=np.ascontiguousarray(G[:, a:b]),
            w_bar=np.array(w[start:stop], dtype=np.float64),
            k=int(kb),
            groups=None if groups is None else np.array(groups[start:stop]),
            **fields,
        )
