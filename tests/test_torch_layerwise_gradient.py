"""prune_layerwise(gradient_block=loss_fn): captured per-sample gradients, core parity, errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from chita_opt.adapters.torch._layerwise import (  # noqa: E402
    _capture_gradients,
    prune_layerwise,
)
from chita_opt.layerwise import budget_from_sparsity, solve_layer  # noqa: E402

torch.set_num_threads(1)


def _seq_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 8)).double()


def _loss(model, batch):
    # a per-token regression loss summed over samples and tokens
    x, y = batch
    return ((model(x) - y) ** 2).sum()


def _data(seed=1, batches=2, b=5, t=3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, t, 12, generator=g, dtype=torch.float64),
             torch.randn(b, t, 8, generator=g, dtype=torch.float64)) for _ in range(batches)]


def _per_sample_grads(model, layer, data):
    """d loss_i / d W of ``layer`` for each sample alone (one forward per sample)."""
    out = []
    for x, y in data:
        for i in range(x.shape[0]):
            model.zero_grad()
            _loss(model, (x[i : i + 1], y[i : i + 1])).backward()
            out.append(layer.weight.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    return torch.stack(out).numpy()


def test_captured_gradients_are_the_per_sample_weight_gradients():
    model = _seq_mlp()
    data = _data()
    group = [("0", model[0])]
    got = _capture_gradients(model, group, data, None, _loss)[0]
    expect = _per_sample_grads(model, model[0], data)
    assert got.shape == (10, 16, 12)
    assert np.allclose(got, expect, atol=1e-10)
    assert all(p.grad is None for p in model.parameters())  # no .grad touched
    assert all(not m._forward_hooks for m in model.modules())


def test_sequential_pruning_with_the_gradient_block_matches_the_core():
    model, dense = _seq_mlp(), _seq_mlp()
    data = _data()
    X = torch.cat([x for x, _ in data]).reshape(-1, 12)
    report = prune_layerwise(model, data, sparsity=0.5, gradient_block=_loss,
                             gradient_weight=2.0, progress=False)

    def expected(W, H, grads):
        W, H = W.detach().numpy(), H.detach().numpy()
        bud = budget_from_sparsity(W.shape, 0.5)
        return solve_layer(H, W, bud, damping=0.01 * np.mean(np.diag(H)), gradients=grads,
                           gradient_weight=2.0).W

    # layer 0: the dense model's gradients
    W0 = expected(dense[0].weight, X.T @ X, _per_sample_grads(dense, dense[0], data))
    assert np.allclose(model[0].weight.detach().numpy(), W0, atol=1e-8)
    # layer 2: inputs and gradients of the model whose layer 0 is already pruned
    Z = torch.tanh(model[0](X)).detach()
    dense[0] = model[0]
    W2 = expected(dense[2].weight, Z.T @ Z, _per_sample_grads(dense, dense[2], data))
    assert np.allclose(model[2].weight.detach().numpy(), W2, atol=1e-8)
    plain = prune_layerwise(_seq_mlp(), data, sparsity=0.5, progress=False)
    assert not np.allclose(plain.layers[0].error, report.layers[0].error)  # the block mattered
    assert all(r.gradient_scale > 0 for r in report.layers)
    assert all(r.gradient_scale == 0 for r in plain.layers)


@pytest.mark.parametrize("off", [None, False])
def test_off_is_the_plain_path(off):
    data = _data()
    a, b = _seq_mlp(), _seq_mlp()
    prune_layerwise(a, data, pattern="2:4", progress=False)
    prune_layerwise(b, data, pattern="2:4", gradient_block=off, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                    b.state_dict().values(), strict=True))


class _Heads(nn.Module):
    """q, k, v share one input and one capture pass; dict batches as Hugging Face models take."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.out = nn.Linear(8, 4)

    def forward(self, input_ids, labels=None):
        y = self.out(torch.tanh(self.q(input_ids) + self.k(input_ids) * self.v(input_ids)))
        return y if labels is None else ((y - labels) ** 2).mean()


def test_dict_batches_and_shared_input_groups_get_every_layers_gradients():
    torch.manual_seed(3)
    model = _Heads()
    data = [{"input_ids": torch.randn(6, 8), "labels": torch.randn(6, 4)} for _ in range(2)]
    report = prune_layerwise(model, data, sparsity=0.5, progress=False,
                             gradient_block=lambda m, b: m(**b))
    assert [r.name for r in report.layers] == ["q", "k", "v", "out"]
    assert all(r.gradient_scale > 0 and r.sparsity == pytest.approx(0.5) for r in report.layers)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("when", ["first", "second"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_model_restored_exactly_when_the_loss_fails(when, exc):
    model = _seq_mlp(4)
    model.train()
    before = _state(model)
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    calls = []

    def loss(m, batch):
        calls.append(1)
        # 2 batches per group: the 3rd call is the second layer's first batch
        if when == "first" or len(calls) == 3:
            raise exc("stop")
        return _loss(m, batch)

    with pytest.raises(exc):
        prune_layerwise(model, _data(), sparsity=0.5, progress=False, gradient_block=loss)
    after = _state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks))
            for m in model.modules()] == hooks
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_gradient_block_errors_name_the_argument():
    model, data = _seq_mlp(), _data()
    before = _state(model)
    with pytest.raises(TypeError, match="gradient_block: expected None/False or a callable"):
        prune_layerwise(model, data, sparsity=0.5, gradient_block="loss")
    with pytest.raises(TypeError, match="gradient_block: expected None/False or a callable"):
        prune_layerwise(model, data, sparsity=0.5, gradient_block=True)
    with pytest.raises(ValueError, match="gradient_block: a custom solver= receives H only"):
        prune_layerwise(model, data, sparsity=0.5, gradient_block=_loss,
                        solver=lambda H, W, b, d: (W, np.ones(W.shape, bool)))
    with pytest.raises(ValueError, match="gradient_weight: expected a finite non-negative"):
        prune_layerwise(model, data, sparsity=0.5, gradient_block=_loss, gradient_weight=-1.0)
    with pytest.raises(TypeError, match=r"gradient_block: expected loss_fn.*scalar loss tensor, "
                                        r"got Tensor of shape"):
        prune_layerwise(model, data, sparsity=0.5, progress=False,
                        gradient_block=lambda m, b: m(b[0]))
    with pytest.raises(TypeError, match=r"gradient_block: expected loss_fn.*got float"):
        prune_layerwise(model, data, sparsity=0.5, progress=False,
                        gradient_block=lambda m, b: 1.0)
    with pytest.raises(ValueError, match=r"gradient_block: layers \['0'\] did not run"):
        prune_layerwise(model, data, sparsity=0.5, progress=False,
                        gradient_block=lambda m, b: b[0].sum())
    with pytest.raises(ValueError, match="not finite"):
        prune_layerwise(model, data, sparsity=0.5, progress=False,
                        gradient_block=lambda m, b: _loss(m, b) * float("inf"))
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_hf_conv1d_gradients_are_in_the_out_by_in_orientation():
    # transformers' Conv1D keeps weight (in, out): the block must use its transpose
    from .test_torch_layerwise import Conv1D

    torch.manual_seed(6)
    model = nn.Sequential(Conv1D(6, 8), nn.Tanh(), nn.Linear(6, 8)).double()
    data = [(x.reshape(5, 3, 12)[..., :8], y) for x, y in _data()]
    got = _capture_gradients(model, [("0", model[0])], data, None, _loss)[0]
    expect = np.transpose(_per_sample_grads(model, model[0], data), (0, 2, 1))
    assert got.shape == (10, 6, 8)
    assert np.allclose(got, expect, atol=1e-10)


def test_a_layer_called_twice_sums_both_calls():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(12, 12)
            self.head = nn.Linear(12, 8)

        def forward(self, x):
            return self.head(self.lin(torch.tanh(self.lin(x))))

    torch.manual_seed(7)
    model = Twice().double()
    data = _data()
    got = _capture_gradients(model, [("lin", model.lin)], data, None, _loss)[0]
    assert np.allclose(got, _per_sample_grads(model, model.lin, data), atol=1e-10)


def test_in_place_ops_after_a_layer_still_work():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(12, 8), nn.Linear(8, 8)

        def forward(self, x):
            h = self.a(x)
            h += 1.0  # in place on the layer's output, as some models do
            return self.b(torch.relu(h))

    torch.manual_seed(8)
    model = InPlace().double()
    data = _data()
    got = _capture_gradients(model, [("a", model.a)], data, None, _loss)[0]
    assert np.allclose(got, _per_sample_grads(model, model.a, data), atol=1e-10)
