"""The JAX adapter: gradient matrix, leaf selection, pruning of pytrees."""

from __future__ import annotations

import copy

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import chita_opt  # noqa: E402
from chita_opt.adapters.jax import (  # noqa: E402
    PytreeLayout,
    apply_masks,
    gradient_matrix,
    leaf_paths,
    prune,
    select_leaves,
)


# ----------------------------------------------------------------- helpers
def mlp_logits(params, x):
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"].T + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


def ce_loss(params, x, y):
    logp = jax.nn.log_softmax(mlp_logits(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def make_mlp(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "w": jnp.asarray(rng.normal(size=(b, a)) / np.sqrt(a), jnp.float32),
            "b": jnp.asarray(0.1 * rng.normal(size=b), jnp.float32),
        }
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def make_data(n, d, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n)


def snapshot(tree):
    return [np.array(leaf, copy=True) for leaf in jax.tree_util.tree_leaves(tree)]


# ------------------------------------------------- gradient matrix: correctness
def manual_rows(params, x, y, mini_batch=1):
    rows = []
    for i in range(0, len(x) - mini_batch + 1, mini_batch):
        g = jax.grad(ce_loss)(params, x[i : i + mini_batch], y[i : i + mini_batch])
        rows.append(np.concatenate([np.ravel(layer["w"]) for layer in g]))
    return np.array(rows)


def test_gradient_matrix_matches_per_example_grad():
    params = make_mlp((5, 7, 3))
    x, y = make_data(30, 5, 3)
    G, w, layout = gradient_matrix(ce_loss, params, (x, y), n_samples=30, chunk_size=8)
    assert G.dtype == np.float32 and G.shape == (30, 5 * 7 + 7 * 3)
    assert layout.names == ("0/w", "1/w")
    np.testing.assert_allclose(G, manual_rows(params, x, y), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        w, np.concatenate([np.ravel(params[0]["w"]), np.ravel(params[1]["w"])])
    )


def test_gradient_matrix_mini_batches_from_an_iterable():
    params = make_mlp((5, 7, 3))
    x, y = make_data(30, 5, 3)
    # Uneven batches that do not align with the mini-batches of 4.
    batches = [(x[:7], y[:7]), (x[7:19], y[7:19]), (x[19:], y[19:])]
    G, _, _ = gradient_matrix(ce_loss, params, iter(batches), n_samples=5, mini_batch=4)
    np.testing.assert_allclose(G, manual_rows(params, x[:20], y[:20], 4), rtol=1e-5, atol=1e-6)
    # Data running out gives fewer rows (30 examples -> 7 rows of 4).
    G, _, _ = gradient_matrix(ce_loss, params, batches, n_samples=100, mini_batch=4)
    assert G.shape[0] == 7


# --------------------------------------------------------- JAX against PyTorch
def torch_rows(model, x, y):
    """Per-example weight gradients of a torch MLP, one backward per example."""
    import torch

    rows = []
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    for i in range(len(x)):
        model.zero_grad()
        out = model(torch.from_numpy(x[i : i + 1]))
        torch.nn.functional.cross_entropy(out, torch.from_numpy(y[i : i + 1])).backward()
        rows.append(torch.cat([wt.grad.reshape(-1) for wt in weights]).numpy().copy())
    return np.array(rows)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16))
def test_same_mlp_in_jax_and_torch_gives_same_gradients_and_support(seed):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 4)
    ).float()
    params = [
        {"w": jnp.asarray(m.weight.detach().numpy()), "b": jnp.asarray(m.bias.detach().numpy())}
        for m in model
        if isinstance(m, torch.nn.Linear)
    ]
    x, y = make_data(24, 6, 4, seed)
    G_jax, w_jax, _ = gradient_matrix(ce_loss, params, (x, y), n_samples=24)
    G_torch = torch_rows(model, x, y)
    w_torch = np.concatenate([model[0].weight.detach().numpy().ravel(),
                              model[2].weight.detach().numpy().ravel()])
    scale = np.abs(G_torch).max()
    np.testing.assert_allclose(G_jax, G_torch, rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_array_equal(w_jax, w_torch)
    supports = [
        chita_opt.solve(
            chita_opt.L0Problem.from_gradients(G, w_torch, sparsity=0.6, damping=1e-3),
            method="backsolve",
        ).support
        for G in (G_jax.astype(np.float64), G_torch.astype(np.float64))
    ]
    np.testing.assert_array_equal(supports[0], supports[1])


# ------------------------------------------------------------ leaf selection
def test_default_selection_skips_biases_scales_embeddings_and_ints():
    params = {
        "embed": {"embedding": jnp.ones((10, 4))},
        "dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
        "norm": {"scale": jnp.ones((1, 3))},
        "conv": {"kernel": jnp.ones((3, 3, 2, 4))},
        "vector": jnp.ones(5),
        "step": jnp.zeros((2, 2), dtype=jnp.int32),
    }
    paths = leaf_paths(params)
    chosen = [paths[i] for i in select_leaves(params)]
    assert chosen == ["conv/kernel", "dense/kernel"]


def test_select_globs_regex_and_predicate():
    params = {"a": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "b": [jnp.ones((3, 3))]}
    paths = leaf_paths(params)
    assert paths == ["a/bias", "a/kernel", "b/0"]

    def names(select):
        return [paths[i] for i in select_leaves(params, select)]

    assert names(["*/kernel"]) == ["a/kernel"]
    assert names("a/*") == ["a/bias", "a/kernel"]
    assert names([r"re:b/\d+", "a/kernel"]) == ["a/kernel", "b/0"]
    assert names(lambda path, leaf: leaf.shape[-1] == 3 and path != "a/bias") == [
        "a/kernel",
        "b/0",
    ]
    # A glob matches the whole path, not a part of it.
    with pytest.raises(ValueError, match="select: pattern 'kernel' matched no leaf"):
        select_leaves(params, ["kernel"])


@pytest.mark.parametrize(
    ("select", "error", "match"),
    [
        (["params/Dense_9/kernel"], ValueError, r"select: pattern 'params/Dense_9/kernel' matched"),
        (["a/kernel", "missing"], ValueError, r"select: pattern 'missing' matched no leaf"),
        ([], ValueError, r"select: expected at least one pattern"),
        (["re:a/(kernel"], ValueError, r"select: invalid regular expression"),
        (3, TypeError, r"select: expected None, a callable"),
        ([1, 2], TypeError, r"select: expected None, a callable"),
        (lambda path, leaf: False, ValueError, r"select: the predicate matched no leaf"),
        (["count"], TypeError, r"select: expected floating-point array leaves, got 'count'"),
    ],
)
def test_select_errors(select, error, match):
    params = {"a": {"kernel": jnp.ones((2, 3))}, "count": jnp.zeros((2, 2), jnp.int32)}
    with pytest.raises(error, match=match):
        select_leaves(params, select)


def test_default_selection_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="select: the default rule"):
        select_leaves({"b": jnp.ones(3)})


def test_layout_roundtrip_keeps_structure_dtypes_and_kinds():
    params = {
        "x": jnp.arange(6.0, dtype=jnp.bfloat16).reshape(2, 3),
        "y": np.arange(12.0).reshape(3, 4),  # a numpy float64 leaf stays numpy float64
        "z": jnp.ones(2),
    }
    layout = PytreeLayout.from_params(params, ["x", "y"])
    assert layout.p == 18 and layout.offsets == (0, 6)
    w = layout.flatten_params(params)
    w2 = np.where(np.arange(18) % 2 == 0, w, 0.0)
    new = layout.unflatten_params(w2, params)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(params)
    assert new["x"].dtype == jnp.bfloat16 and isinstance(new["x"], jax.Array)
    assert new["y"].dtype == np.float64 and isinstance(new["y"], np.ndarray)
    assert new["y"] is not params["y"]
    np.testing.assert_array_equal(layout.flatten_params(new), w2)
    masks = layout.masks(w2, params)
    assert masks["z"].dtype == bool and bool(masks["z"].all())
    np.testing.assert_array_equal(np.asarray(masks["y"]).ravel(), w2[6:] != 0)
    with pytest.raises(ValueError, match=r"w: expected shape \(18,\)"):
        layout.unflatten_params(np.zeros(17), params)
    with pytest.raises(ValueError, match="params: expected a pytree with the structure"):
        layout.flatten_params({"x": params["x"]})


# ------------------------------------------------------ gradient matrix errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 0}, ValueError, "n_samples: expected a positive integer, got 0"),
        ({"n_samples": 2.5}, TypeError, "n_samples: expected a positive integer"),
        ({"mini_batch": -1}, ValueError, "mini_batch: expected a positive integer"),
        ({"mini_batch": 11}, ValueError, "data: expected at least mini_batch=11 examples"),
        ({"select": ["nope"]}, ValueError, "select: pattern 'nope' matched no leaf"),
    ],
)
def test_gradient_matrix_argument_errors(kwargs, error, match):
    params = make_mlp((3, 4, 2))
    x, y = make_data(10, 3, 2)
    with pytest.raises(error, match=match):
        gradient_matrix(ce_loss, params, (x, y), **kwargs)


def test_gradient_matrix_data_and_loss_errors():
    params = make_mlp((3, 4, 2))
    x, y = make_data(10, 3, 2)
    with pytest.raises(TypeError, match="data: expected a tuple"):
        gradient_matrix(ce_loss, params, 5)
    with pytest.raises(TypeError, match="data: expected each batch to be a pair"):
        gradient_matrix(ce_loss, params, [x, y, x])
    with pytest.raises(ValueError, match="data: expected inputs and targets with the same"):
        gradient_matrix(ce_loss, params, (x, y[:5]))
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        gradient_matrix("loss", params, (x, y))
    with pytest.raises(TypeError, match="loss_fn: expected .* floating-point scalar"):
        gradient_matrix(lambda p, a, b: mlp_logits(p, a).sum(axis=1), params, (x, y))
