"""N:M patterns in the pruning pipeline: parsing, groups along the input dimension, caps."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt.pruning import ParamLayout, PruneConfig
from chita_opt.pruning.patterns import (
    fill_groups,
    input_groups,
    parse_pattern,
    top_per_group,
)


@pytest.mark.parametrize(
    ("text", "exc", "match"),
    [
        ("2-4", ValueError, "pattern: expected .N:M. such as"),
        ("5:4", ValueError, r"1 <= N <= M"),
        ("0:4", ValueError, r"1 <= N <= M"),
        (24, TypeError, "pattern: expected .N:M. or a pair"),
    ],
)
def test_bad_patterns_are_named(text, exc, match):
    with pytest.raises(exc, match=match):
        parse_pattern(text)


def test_pattern_implies_the_sparsity():
    assert parse_pattern(" 2 : 4 ") == (2, 4)
    assert PruneConfig(pattern="2:4").sparsity == 0.5
    assert PruneConfig(pattern="1:4", sparsity=0.75).sparsity == 0.75
    with pytest.raises(ValueError, match=r"sparsity: expected nothing .*0.5.* with pattern"):
        PruneConfig(pattern="2:4", sparsity=0.9)
    with pytest.raises(TypeError, match=r"sparsity: expected a number in .*got nothing"):
        PruneConfig()


def test_groups_run_along_the_input_dimension():
    layout = ParamLayout(["fc", "conv"], [(3, 8), (2, 2, 2, 2)])
    g = input_groups(layout, 4, output_axis=0)
    # (out, in): 4 consecutive entries of a row share a group
    np.testing.assert_array_equal(g[:24], np.repeat(np.arange(6), 4))
    # conv (out, in*kh*kw) view: 8 entries per output, 2 groups each
    np.testing.assert_array_equal(g[24:], 6 + np.repeat(np.arange(4), 4))
    # (in, out) kernels: groups run down each column
    k = ParamLayout(["kernel"], [(8, 3)])
    gk = input_groups(k, 4, output_axis=-1).reshape(8, 3)
    for col in range(3):
        np.testing.assert_array_equal(gk[:, col], 2 * col + np.repeat([0, 1], 4))


def test_tensors_that_do_not_divide_are_listed():
    layout = ParamLayout(["a", "b", "bias"], [(2, 8), (2, 6), (6,)])
    with pytest.raises(ValueError, match=r"b \(2, 6\) \(input size 6\).*bias \(6,\).*select="):
        input_groups(layout, 4, output_axis=0)


@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(1, 9),
    data=st.data(),
)
def test_top_per_group_is_the_best_feasible_set(p, data):
    groups = np.array(data.draw(st.lists(st.integers(0, 2), min_size=p, max_size=p)))
    scores = np.array(data.draw(st.lists(st.floats(0, 10), min_size=p, max_size=p)))
    cap = data.draw(st.integers(0, 3))
    k = data.draw(st.integers(0, p))
    got = top_per_group(scores, groups, cap, k)
    assert len(got) <= k
    assert all(np.sum(groups[got] == g) <= cap for g in set(groups.tolist()))
    best_size = 0
    best_sum = 0.0
    for r in range(min(k, p) + 1):
        for c in itertools.combinations(range(p), r):
            c = list(c)
            if all(np.sum(groups[c] == g) <= cap for g in set(groups.tolist())):
                if r > best_size or (r == best_size and scores[c].sum() > best_sum):
                    best_size, best_sum = r, float(scores[c].sum())
    assert len(got) == best_size
    assert scores[got].sum() == pytest.approx(best_sum)


def test_fill_groups_tops_up_every_group():
    groups = np.repeat(np.arange(3), 4)
    keep = np.zeros(12, dtype=bool)
    keep[[0, 1, 2, 4]] = True
    scores = np.arange(12, dtype=float)
    out = fill_groups(keep, scores, groups, 2)
    assert out[[0, 1, 2]].all()  # groups already full keep what they had
    assert out[4:8].sum() == 2 and out[7]  # the best other entry joins
    assert out[8:].sum() == 2 and out[[10, 11]].all()


def _counts(weight: np.ndarray, m: int) -> np.ndarray:
    return (weight.reshape(weight.shape[0], -1, m) != 0).sum(-1)


def test_magnitude_two_four_in_both_adapters():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    from chita_opt.adapters import jax as jadapt
    from chita_opt.adapters import torch as tadapt

    torch.manual_seed(0)
    X = torch.randn(64, 8)
    y = (X[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
    params = [{"w": jax.numpy.asarray(m.weight.detach().numpy())}
              for m in (model[0], model[2])]
    report = tadapt.prune(model, torch.nn.functional.cross_entropy, (X, y), pattern="2:4",
                          method="magnitude", progress=False)
    assert report.options["pattern"] == "2:4" and report.sparsity == 0.5
    for mod in (model[0], model[2]):
        assert (_counts(mod.weight.detach().numpy(), 4) == 2).all()

    def loss(p, x, t):
        h = jax.nn.relu(x @ p[0]["w"].T)
        return -jax.numpy.mean(jax.nn.log_softmax(h @ p[1]["w"].T)[jax.numpy.arange(len(t)), t])

    new, _, _ = jadapt.prune(loss, params, (X.numpy(), y.numpy()), pattern="2:4",
                                 method="magnitude", output_axis=0, progress=False)
    for leaf, torch_mod in zip(new, (model[0], model[2]), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf["w"]) != 0,
                                      torch_mod.weight.detach().numpy() != 0)
    with pytest.raises(ValueError, match="output_axis: expected -1 or 0"):
        jadapt.prune(loss, params, (X.numpy(), y.numpy()), pattern="2:4", output_axis=1)


@pytest.mark.parametrize("stages", [1, 2])
def test_chita_n_m_keeps_exactly_n_per_group(stages):
    torch = pytest.importorskip("torch")
    from chita_opt.adapters import torch as tadapt

    torch.manual_seed(1)
    X = torch.randn(200, 8)
    y = (X[:, 0] + X[:, 1] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
    report = tadapt.prune(model, torch.nn.functional.cross_entropy, (X, y), pattern="2:4",
                          stages=stages, progress=False)
    assert report.method == "chita" and report.k == report.p // 2
    for mod in (model[0], model[2]):
        counts = _counts(mod.weight.detach().numpy(), 4)
        mask = _counts(mod.weight_mask.detach().numpy(), 4)
        assert (mask == 2).all()  # the mask holds exactly N per group
        assert (counts == 2).all()


def test_semi_structured_conversion_refuses_what_it_cannot_convert():
    torch = pytest.importorskip("torch")
    from chita_opt.adapters import torch as tadapt

    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    X, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    tadapt.prune(model, torch.nn.functional.cross_entropy, (X, y), pattern="2:4",
                 method="magnitude", progress=False)
    before = model[0].weight_orig.detach().clone()
    with pytest.raises(ValueError, match=r"0: still masked \(call make_permanent"):
        tadapt.to_semi_structured(model)
    tadapt.make_permanent(model)
    with pytest.raises(ValueError, match="0: on cpu, expected a CUDA device"):
        tadapt.to_semi_structured(model)
    assert torch.equal(model[0].weight.detach(), before * (before != 0))


@pytest.mark.skipif(
    not (__import__("importlib").util.find_spec("torch")
         and __import__("torch").cuda.is_available()),
    reason="needs a CUDA GPU (sparse tensor cores)",
)
def test_semi_structured_on_cuda_matches_the_dense_layer():
    import torch

    from chita_opt.adapters import torch as tadapt

    model = torch.nn.Sequential(torch.nn.Linear(128, 128)).half().cuda()
    X = torch.randn(256, 128, device="cuda", dtype=torch.half)
    y = torch.randint(0, 128, (256,), device="cuda")
    tadapt.prune(model, torch.nn.functional.cross_entropy, (X, y), pattern="2:4",
                 method="magnitude", progress=False)
    tadapt.make_permanent(model)
    dense = model(X)
    assert tadapt.to_semi_structured(model) == ["0"]
    torch.testing.assert_close(model(X), dense, rtol=1e-2, atol=1e-2)


def test_n_m_with_blocks_keeps_whole_groups_in_every_block():
    torch = pytest.importorskip("torch")
    from chita_opt.adapters import torch as tadapt

    torch.manual_seed(2)
    X = torch.randn(200, 16)
    y = (X[:, 0] - X[:, 3] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
    report = tadapt.prune(model, torch.nn.functional.cross_entropy, (X, y), pattern="2:4",
                          block_size=30, stages=2, damping=1e-3, progress=False)  # 30: not 4k
    assert report.stages[-1].n_blocks > 1
    for mod in (model[0], model[2]):
        assert (_counts(mod.weight.detach().numpy(), 4) == 2).all()


def test_aligned_blocks_and_strided_groups():
    from chita_opt.pruning._checks import align_blocks

    groups = np.repeat(np.arange(6), 4)  # contiguous groups of 4
    assert align_blocks([(0, 10), (10, 24)], groups) == [(0, 8), (8, 24)]
    strided = np.tile(np.arange(3), 8)  # a (in, out) kernel's groups run down columns
    with pytest.raises(ValueError, match="not contiguous"):
        align_blocks([(0, 12), (12, 24)], strided)
