"""The block approximation: budgets from one global ranking, independent blocks, executors."""

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt import L0Problem, k_from_sparsity
from chita_opt.pruning import (
    BlockTask,
    ParamLayout,
    block_budgets,
    multistage_prune,
    solve_block,
    solve_blocks,
)


def block_diagonal_net(block_sizes, rows_per_block=12, seed=0):
    """Per-sample gradients whose blocks touch disjoint rows: the block model is exact."""
    rng = np.random.default_rng(seed)
    p = sum(block_sizes)
    G = np.zeros((rows_per_block * len(block_sizes), p))
    col = 0
    for b, size in enumerate(block_sizes):
        G[b * rows_per_block : (b + 1) * rows_per_block, col : col + size] = rng.normal(
            size=(rows_per_block, size)
        )
        col += size
    w0 = rng.normal(size=p)
    calls = []

    def gradient_fn(w, columns):
        calls.append(columns.copy())
        return G[:, columns]

    return G, w0, gradient_fn, calls


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    frac=st.floats(0, 1),
    seed=st.integers(0, 1000),
)
def test_budgets_count_the_global_top_k_in_each_block(sizes, frac, seed):
    rng = np.random.default_rng(seed)
    q = sum(sizes)
    scores = rng.normal(size=q).round(1)  # rounding creates ties
    k = round(frac * q)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    blocks = list(itertools.pairwise(edges))
    budgets = block_budgets(scores, blocks, k)
    assert budgets.sum() == k
    # independent reference: a stable sort on -score (ties -> smaller index)
    chosen = np.zeros(q, bool)
    chosen[np.argsort(-scores, kind="stable")[:k]] = True
    assert budgets.tolist() == [int(chosen[a:b].sum()) for a, b in blocks]


def test_layout_blocks_stay_inside_tensors_and_cover_everything():
    layout = ParamLayout(["a", "b", "c"], [(10, 10), (7,), (3, 50)])
    blocks = layout.blocks(30)
    assert blocks[0][0] == 0 and blocks[-1][1] == layout.p
    assert all(b0[1] == b1[0] for b0, b1 in itertools.pairwise(blocks))
    edges = {0, 100, 107, 257}
    for a, b in blocks:
        assert not any(a < e < b for e in edges)  # never straddles two tensors
        assert b - a < 60  # at most ~2 x block_size
    assert (100, 107) in blocks  # a tensor smaller than a block is one block
    assert len([b for b in blocks if b[1] <= 100]) == 3  # 100 // 30 blocks in "a"


def test_block_diagonal_problems_are_solved_exactly_by_blocks():
    sizes = [15, 25, 20]
    G, w0, gfn, _ = block_diagonal_net(sizes)
    edges = np.cumsum([0, *sizes])
    blocks = list(itertools.pairwise(edges))
    rep = multistage_prune(w0, gfn, sparsity=0.5, method="backsolve", blocks=blocks, progress=False)
    full = L0Problem.from_gradients(G, w0, sparsity=0.5, damping=1e-3)
    # no cross-block terms: the sum of block objectives is the full objective
    assert rep.stages[0].objective_kind == "block-sum"
    assert rep.objective == pytest.approx(full.objective(rep.weights), rel=1e-9)
    assert rep.stages[0].n_blocks == 3
    assert np.count_nonzero(rep.weights) == k_from_sparsity(G.shape[1], 0.5)
    # each block kept its share of the global magnitude ranking
    budgets = block_budgets(np.abs(w0), blocks, full.k)
    assert [np.count_nonzero(rep.weights[a:b]) for a, b in blocks] == budgets.tolist()


# tiny synthetic nets move far from their weights: the warning is expected
@pytest.mark.filterwarnings("ignore::chita_opt.pruning.ModelValidityWarning")
def test_one_block_is_the_unblocked_solve():
    _G, w0, gfn, _ = block_diagonal_net([30, 30])
    one = multistage_prune(
        w0, gfn, sparsity=0.6, method="backsolve", blocks=[(0, 60)], progress=False
    )
    plain = multistage_prune(w0, gfn, sparsity=0.6, method="backsolve", progress=False)
    np.testing.assert_allclose(one.weights, plain.weights, rtol=1e-10, atol=1e-12)


def test_threads_and_gradient_groups_give_the_in_process_result():
    _G, w0, gfn, calls = block_diagonal_net([20, 20, 20, 20], seed=2)
    layout = ParamLayout(["l1", "l2"], [(40,), (4, 10)])
    common = dict(
        sparsity=0.7, stages=2, method="chita", layout=layout, block_size=20, progress=False
    )
    ref = multistage_prune(w0, gfn, **common)
    n_ref_calls = len(calls)
    with ThreadPoolExecutor(2) as pool:
        threaded = multistage_prune(w0, gfn, executor=pool, **common)
    np.testing.assert_array_equal(threaded.weights, ref.weights)
    calls.clear()
    grouped = multistage_prune(w0, gfn, max_columns=25, **common)
    np.testing.assert_allclose(grouped.weights, ref.weights, rtol=1e-12, atol=1e-14)
    assert len(calls) > n_ref_calls  # several gradient passes per stage ...
    assert max(int(c.sum()) for c in calls) <= 25  # ... each for at most 25 columns


def test_solve_blocks_accepts_any_submit_executor_and_rejects_others():
    rng = np.random.default_rng(0)
    tasks = [
        BlockTask(
            start=10 * i,
            stop=10 * i + 10,
            A=rng.normal(size=(8, 10)),
            w_bar=rng.normal(size=10),
            k=4,
            method="backsolve",
        )
        for i in range(3)
    ]

    class Eager:  # the smallest executor: submit returns something with .result()
        def submit(self, fn, *args):
            value = fn(*args)
            return type("F", (), {"result": lambda self: value})()

    got = solve_blocks(tasks, executor=Eager())
    ref = [solve_block(t) for t in tasks]
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a.w, b.w)
        assert np.count_nonzero(a.w) == 4
    with pytest.raises(TypeError, match="executor: expected an object with a submit"):
        solve_blocks(tasks, executor=[1, 2])


def test_bad_blocks_are_rejected():
    _, w0, gfn, _ = block_diagonal_net([10, 10])
    with pytest.raises(ValueError, match=r"blocks: expected non-empty, disjoint blocks"):
        multistage_prune(w0, gfn, sparsity=0.5, blocks=[(0, 12), (10, 20)], progress=False)
    with pytest.raises(ValueError, match=r"blocks: expected blocks covering \[0, 20\)"):
        multistage_prune(w0, gfn, sparsity=0.5, blocks=[(0, 10)], progress=False)
    with pytest.raises(TypeError, match="blocks: expected a sequence of"):
        multistage_prune(w0, gfn, sparsity=0.5, blocks=[1, 2], progress=False)
    with pytest.raises(ValueError, match="block_size: expected a positive integer"):
        multistage_prune(w0, gfn, sparsity=0.5, block_size=0, progress=False)


# tiny synthetic nets move far from their weights: the warning is expected
@pytest.mark.filterwarnings("ignore::chita_opt.pruning.ModelValidityWarning")
def test_blocks_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    _G, w0, gfn, _ = block_diagonal_net([20, 30, 25], seed=5)
    common = dict(sparsity=0.6, stages=2, method="backsolve", block_size=20, progress=False)
    ref = multistage_prune(w0, gfn, **common)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = multistage_prune(w0, gfn, executor=client, **common)
    np.testing.assert_allclose(on_dask.weights, ref.weights, rtol=1e-12, atol=1e-14)
    assert on_dask.stages[-1].n_blocks == ref.stages[-1].n_blocks > 1
