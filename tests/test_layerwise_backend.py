"""The torch backend of the layer solver (``solve_layer(..., device=...)``).

On device "cpu" it must give the numpy path's masks and (to rounding) weights
for every method, budget kind, damping 0 (singular blocks: the pinv fallback)
and the gradient block; "cuda" runs only where a GPU is present.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from chita_opt.layerwise import LAYER_METHODS, Budget, solve_layer
from chita_opt.layerwise._linalg import NumpyLinalg, linalg_for

torch = pytest.importorskip("torch")

BUDGETS = {
    "layer": lambda d_out, d_in: Budget.layer(d_out * d_in // 3),
    "row": lambda d_out, d_in: Budget.per_row(d_in // 4),
    "nm": lambda d_out, d_in: Budget.nm(2, 4),
}


def _problem(seed, d_out, d_in, n, grads):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in))
    W = rng.standard_normal((d_out, d_in))
    g = rng.standard_normal((3, d_out, d_in)) if grads else None
    return X.T @ X, W, g


def _assert_same(H, W, budget, damping, method, g, device):
    kw = dict(damping=damping, method=method, gradients=g,
              iht_iters=3 if method == "chita" else 0)
    ref = solve_layer(H, W, budget, **kw)
    got = solve_layer(H, W, budget, device=device, **kw)
    np.testing.assert_array_equal(got.mask, ref.mask)
    np.testing.assert_allclose(got.W, ref.W, rtol=1e-7, atol=1e-9)
    assert got.objective == pytest.approx(ref.objective, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize("kind", sorted(BUDGETS))
@pytest.mark.parametrize("grads", [False, True], ids=["H", "grad"])
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_cpu_matches_numpy(method, kind, grads, seed):
    # d_in 16 <= 64: exact exchanges run too; N = 40 > d_in, a damped SPD H
    H, W, g = _problem(seed, 6, 16, 40, grads)
    budget = BUDGETS[kind](*W.shape)
    _assert_same(H, W, budget, 1e-2 * np.diag(H).mean(), method, g, "cpu")


@pytest.mark.parametrize("kind", ["row", "nm"])
def test_torch_cpu_matches_numpy_singular_h(kind):
    # N < d_in and no damping: blocks that are not positive definite take the
    # pseudo-inverse on both paths, and the pruned-set form falls back alike
    H, W, g = _problem(3, 5, 16, 8, False)
    _assert_same(H, W, BUDGETS[kind](*W.shape), 0.0, "chita", g, "cpu")


@pytest.mark.parametrize("seed", [3, 6])
def test_torch_cpu_singular_h_layer_budget_is_a_descent(seed):
    # rank 8 < d_in = 16 without damping: the dense Hd^{-1} is rounding noise
    # (pivots near 0), differently so in LAPACK and torch, and the paths may
    # pick different (equally valid) masks; both must stay feasible descents
    H, W, _ = _problem(seed, 5, 16, 8, False)
    budget = BUDGETS["layer"](*W.shape)
    magn = solve_layer(H, W, budget, method="magnitude")
    got = solve_layer(H, W, budget, device="cpu")
    assert budget.is_feasible(got.mask) and np.isfinite(got.W).all()
    assert got.objective <= magn.objective


def test_torch_cpu_matches_numpy_larger_layer():
    # pruned-set refits (|D| < |S|) and several padded chunks of rows
    H, W, _ = _problem(4, 48, 96, 300, False)
    _assert_same(H, W, Budget.layer(48 * 96 * 2 // 3), 1e-2 * np.diag(H).mean(), "chita", None,
                 torch.device("cpu"))


def test_device_none_is_numpy():
    assert isinstance(linalg_for(None), NumpyLinalg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", sorted(BUDGETS))
@pytest.mark.parametrize("grads", [False, True], ids=["H", "grad"])
def test_torch_cuda_matches_numpy(kind, grads):
    H, W, g = _problem(5, 6, 16, 40, grads)
    _assert_same(H, W, BUDGETS[kind](*W.shape), 1e-2 * np.diag(H).mean(), "chita", g, "cuda")


@pytest.mark.parametrize("bad", ["gpu", "tpu", 3, 1.5, ["cpu"]])
def test_bad_device_names_argument_expected_and_received(bad):
    H, W, _ = _problem(0, 4, 8, 20, False)
    with pytest.raises(ValueError, match=r"device: expected .*'cpu'.*got") as info:
        solve_layer(H, W, Budget.per_row(4), device=bad)
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_says_so():
    H, W, _ = _problem(0, 4, 8, 20, False)
    with pytest.raises(ValueError, match=r"device: .*'cuda'.*torch\.cuda\.is_available\(\) is "
                                         r"False"):
        solve_layer(H, W, Budget.per_row(4), device="cuda")


def test_numpy_path_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "from chita_opt.layerwise import Budget, solve_layer\n"
        "H = np.eye(8); W = np.arange(16.0).reshape(2, 8)\n"
        "solve_layer(H, W, Budget.per_row(4), damping=0.1)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 8)).double()


@pytest.mark.parametrize("kw", [dict(sparsity=0.5), dict(pattern="2:4")])
def test_prune_layerwise_solver_device_cpu_matches_numpy(kw):
    from chita_opt.adapters.torch._layerwise import prune_layerwise

    X = torch.randn(100, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref, got = _mlp(), _mlp()
    prune_layerwise(ref, X, progress=False, **kw)
    prune_layerwise(got, X, progress=False, solver_options={"device": "cpu"}, **kw)
    for a, b in zip(ref.modules(), got.modules(), strict=True):
        if isinstance(a, torch.nn.Linear):
            torch.testing.assert_close(b.weight, a.weight, rtol=1e-7, atol=1e-9)
            assert torch.equal(b.weight != 0, a.weight != 0)


def test_prune_layerwise_bad_solver_device_fails_before_touching_the_model():
    from chita_opt.adapters.torch._layerwise import prune_layerwise

    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"device: expected .*got str 'gpu'"):
        prune_layerwise(model, torch.randn(20, 12, dtype=torch.float64), sparsity=0.5,
                        progress=False, solver_options={"device": "gpu"})
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
