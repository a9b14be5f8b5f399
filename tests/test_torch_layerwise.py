"""PyTorch layer-wise adapter: captured Gram matrices, sequential order, masks, restore, errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from chita_opt.adapters.torch._layerwise import prune_layerwise  # noqa: E402
from chita_opt.layerwise import budget_from_sparsity, solve_layer  # noqa: E402

torch.set_num_threads(1)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _expected(W, H, sparsity=None, pattern=None, damping=0.01):
    W = W.detach().double().numpy()
    H = H.detach().double().numpy()
    bud = budget_from_sparsity(W.shape, sparsity, pattern)
    return solve_layer(H, W, bud, damping=damping * np.mean(np.diag(H))).W


def test_sequential_pruning_matches_the_core_on_captured_gram_matrices():
    model = _mlp()
    dense = _mlp()
    X = torch.randn(200, 12, dtype=torch.float64)
    model.double()
    dense.double()
    report = prune_layerwise(model, [X[:120], X[120:]], sparsity=0.5, progress=False)
    # layer 0 sees X itself
    W0 = _expected(dense[0].weight, X.T @ X, 0.5)
    assert np.allclose(model[0].weight.detach().numpy(), W0, atol=1e-8)
    # layer 2 sees the outputs of the *pruned* layer 0 (sequential)
    Z = torch.relu(model[0](X)).detach()
    W2 = _expected(dense[2].weight, Z.T @ Z, 0.5)
    assert np.allclose(model[2].weight.detach().numpy(), W2, atol=1e-8)
    Z_dense = torch.relu(dense[0](X)).detach()
    W2_dense = _expected(dense[2].weight, Z_dense.T @ Z_dense, 0.5)
    assert not np.allclose(W2, W2_dense)  # the order matters, so the test can fail
    assert [r.name for r in report.layers] == ["0", "2"]
    for rec in report.layers:
        assert rec.sparsity == pytest.approx(0.5)
        assert rec.error <= rec.error_magnitude + 1e-9


def test_masks_are_torch_prune_masks_and_nm_holds():
    model = _mlp(1)
    prune_layerwise(model, torch.randn(64, 12), pattern="2:4", progress=False)
    for lin in (model[0], model[2]):
        assert hasattr(lin, "weight_orig") and hasattr(lin, "weight_mask")
        mask = lin.weight_mask
        assert torch.equal(lin.weight, lin.weight_orig * mask)
        counts = mask.reshape(mask.shape[0], -1, 4).sum(-1)
        assert torch.all(counts == 2)
    # the masks keep zeros at zero through training steps
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(8, 12)).sum().backward()
    opt.step()
    assert torch.all(model[0].weight[model[0].weight_mask == 0] == 0)


class _Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [_Boom, KeyboardInterrupt])
def test_model_restored_exactly_on_failure(exc):
    model = _mlp(2)
    model.train()
    before = _state(model)
    params_before = [id(p) for p in model.parameters()]
    hooks_before = [len(m._forward_pre_hooks) for m in model.modules()]

    def fail(rec):
        raise exc("stop")

    with pytest.raises(exc):
        prune_layerwise(model, torch.randn(32, 12), sparsity=0.5, progress=False, callback=fail)
    after = _state(model)
    assert before.keys() == after.keys()  # no weight_orig / weight_mask left behind
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [id(p) for p in model.parameters()] == params_before
    assert [len(m._forward_pre_hooks) for m in model.modules()] == hooks_before
    assert model.training


class _Heads(nn.Module):
    """q, k, v read the same input (one capture pass); a dict-input forward."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.out = nn.Linear(8, 4)
        self.calls = 0

    def forward(self, input_ids, scale=1.0):
        self.calls += 1
        x = input_ids * scale
        return self.out(torch.tanh(self.q(x) + self.k(x) * self.v(x)))


def test_dict_batches_shared_inputs_and_early_stop():
    torch.manual_seed(3)
    model = _Heads()
    data = [{"input_ids": torch.randn(16, 8), "scale": 2.0} for _ in range(3)]
    report = prune_layerwise(model, data, sparsity=0.75, progress=False)
    assert [r.name for r in report.layers] == ["q", "k", "v", "out"]
    # one planning pass (1 batch) + 2 capture passes (q/k/v together, then out) of 3 batches
    assert model.calls == 1 + 2 * 3
    # k captured the (scaled) inputs of every batch: its dense output energy says so
    X = torch.cat([d["input_ids"] * 2.0 for d in data]).double()
    torch.manual_seed(3)
    Wk = _Heads().k.weight.detach().double()  # k's dense weight, rebuilt from the seed
    energy = 0.5 * float(torch.einsum("ij,jk,ik->", Wk, X.T @ X, Wk))
    assert report.layers[1].dense_energy == pytest.approx(energy, rel=1e-6)


def test_default_selection_skips_lm_head_and_tied_weights():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.body = nn.Linear(8, 8)
            self.lm_head = nn.Linear(8, 10, bias=False)
            self.tied = nn.Linear(8, 10, bias=False)
            self.tied.weight = self.emb.weight

        def forward(self, ids):
            h = self.body(self.emb(ids))
            return self.lm_head(h) + self.tied(h)

    model = LM()
    report = prune_layerwise(model, torch.randint(0, 10, (4, 6)), sparsity=0.5, progress=False)
    assert [r.name for r in report.layers] == ["body"]
    report = prune_layerwise(LM(), torch.randint(0, 10, (4, 6)), sparsity=0.5, progress=False,
                             layers=["lm_head"])
    assert [r.name for r in report.layers] == ["lm_head"]


class Conv1D(nn.Module):
    """The shape convention of transformers' GPT-2 Conv1D: weight (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_hf_conv1d_is_pruned_along_its_input_dimension():
    torch.manual_seed(4)
    model = nn.Sequential(Conv1D(6, 8))
    X = torch.randn(50, 8)
    W_dense = model[0].weight.detach().clone()
    prune_layerwise(model, X, pattern="2:4", progress=False)
    mask = model[0].weight_mask.T  # (out, in)
    assert torch.all(mask.reshape(6, 2, 4).sum(-1) == 2)
    expect = _expected(W_dense.T, X.T @ X, pattern="2:4")
    assert np.allclose(model[0].weight.detach().double().numpy().T, expect, atol=1e-5)


def test_errors_name_the_argument():
    model = _mlp()
    X = torch.randn(8, 12)
    with pytest.raises(ValueError, match="exactly one of sparsity"):
        prune_layerwise(model, X, sparsity=0.5, pattern="2:4")
    with pytest.raises(ValueError, match="sparsity: expected a number in"):
        prune_layerwise(model, X, sparsity=1.2)
    with pytest.raises(ValueError, match="pattern: expected 1 <= N <= M"):
        prune_layerwise(model, X, pattern="4:2")
    with pytest.raises(TypeError, match=r"model: expected a torch\.nn\.Module"):
        prune_layerwise("model", X, sparsity=0.5)
    with pytest.raises(TypeError, match="data: expected"):
        prune_layerwise(model, 3.0, sparsity=0.5)
    with pytest.raises(ValueError, match="data: expected at least one"):
        prune_layerwise(model, [], sparsity=0.5)
    with pytest.raises(ValueError, match="layers: expected names of Linear"):
        prune_layerwise(model, X, sparsity=0.5, layers=["nope"])
    with pytest.raises(ValueError, match="method: expected one of"):
        prune_layerwise(model, X, sparsity=0.5, method="obc")
    with pytest.raises(ValueError, match="damping"):
        prune_layerwise(model, X, sparsity=0.5, damping=-1)
    with pytest.raises(ValueError, match=r"budget: N:M pattern 2:8 needs d_in divisible by 8"):
        prune_layerwise(model, X, pattern="2:8")
    assert not hasattr(model[0], "weight_mask")  # the failed call left it untouched
    prune_layerwise(model, X, sparsity=0.5, progress=False)
    with pytest.raises(ValueError, match=r"already carries a torch\.nn\.utils\.prune mask"):
        prune_layerwise(model, X, sparsity=0.5)


def test_custom_solver_plugs_into_the_same_capture_and_is_checked():
    model = _mlp(5)
    X = torch.randn(40, 12)
    seen = []

    def first_two_of_four(H, W_bar, budget, damping):
        seen.append((H.shape, W_bar.shape, str(budget), damping))
        mask = np.zeros(W_bar.shape, dtype=bool)
        mask[:, 0::4] = mask[:, 1::4] = True
        return W_bar * mask, mask

    report = prune_layerwise(model, X, pattern="2:4", solver=first_two_of_four, progress=False)
    assert report.method == "first_two_of_four"
    assert torch.equal(model[0].weight_mask[:, 2::4], torch.zeros(16, 3))
    assert [s[:2] for s in seen] == [((12, 12), (16, 12)), ((16, 16), (8, 16))]
    with pytest.raises(ValueError, match="solver: expected"):
        # two kept per group of four violates 1:4
        prune_layerwise(_mlp(5), X, pattern="1:4", solver=first_two_of_four, progress=False)
    with pytest.raises(TypeError, match="solver: expected a callable"):
        prune_layerwise(_mlp(5), X, sparsity=0.5, solver="sparsegpt")


class _MLPBlock(nn.Module):
    """Temporaries freed mid-forward: id() of fc2's input can repeat fc1's."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln(x))))


def test_layers_with_different_inputs_get_separate_passes():
    # regression: grouping by id(input) put fc1 and fc2 in one capture pass in
    # the benchmark's transformer, so fc2 never saw the pruned fc1
    from chita_opt.adapters.torch._layerwise import _plan

    torch.manual_seed(6)
    model = nn.Sequential(_MLPBlock(), _MLPBlock())
    chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    groups, _ = _plan(model, chosen, [torch.randn(4, 5, 8)], None)
    assert [[n for n, _ in g] for g in groups] == [["0.fc1"], ["0.fc2"], ["1.fc1"], ["1.fc2"]]
