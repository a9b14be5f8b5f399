"""The PyTorch adapter: gradients, pruning in place, masks, transactions, errors."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402

from chita_opt import k_from_sparsity  # noqa: E402
from chita_opt.adapters.torch import _state as tstate  # noqa: E402
from chita_opt.adapters.torch import (  # noqa: E402
    apply_masks,
    gradient_matrix,
    gradual_prune,
    held_out_loss,
    make_permanent,
    masks,
    prune,
    select_damping,
    selected_params,
)


# ---------------------------------------------------------------- fixtures
def make_data(n=1200, d=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    W = torch.randn(d, classes, generator=g)
    y = (X @ W + 0.5 * torch.randn(n, classes, generator=g)).argmax(1)
    return X, y


@pytest.fixture(scope="module")
def trained():
    """A small trained MLP (352 prunable weights); rows 800: are held out."""
    torch.manual_seed(0)
    X, y = make_data()
    model = nn.Sequential(
        nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(X[:800]), y[:800]).backward()
        opt.step()
    model.eval()
    return model, X, y


def fresh(trained):
    model, X, y = trained
    return copy.deepcopy(model), X, y


def loss_of(model, X, y):
    with torch.no_grad():
        return float(F.cross_entropy(model(X), y))


def state_of(model):
    """Everything prune must restore: tensors by name, hooks, modes, requires_grad."""
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        [
            (n, type(m).__name__, len(m._forward_pre_hooks), m.training)
            for n, m in model.named_modules()
        ],
        [(n, p.requires_grad, id(p)) for n, p in model.named_parameters()],
    )


def assert_same_state(a, b):
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k
    assert a[1] == b[1]
    assert a[2] == b[2]


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


# ---------------------------------------------------------------- gradients
def manual_rows(model, X, y, names, m=1):
    params = dict(model.named_parameters())
    rows = []
    for i in range(0, X.shape[0], m):
        model.zero_grad()
        F.cross_entropy(model(X[i : i + m]), y[i : i + m]).backward()
        rows.append(torch.cat([params[n].grad.reshape(-1) for n in names]).numpy().copy())
    model.zero_grad()
    return np.array(rows)


def test_gradient_matrix_matches_a_per_sample_autograd_loop():
    torch.manual_seed(1)
    model = ConvNet().eval()
    X, y = torch.randn(20, 1, 6, 6), torch.randint(0, 5, (20,))
    G, w, layout = gradient_matrix(model, F.cross_entropy, (X, y), n_samples=20, chunk_size=7)
    assert layout.names == ("conv.weight", "fc.weight")  # no biases, no norm layers
    assert G.shape == (20, layout.p) and G.dtype == np.float32
    np.testing.assert_allclose(G, manual_rows(model, X, y, layout.names), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(
        w, torch.cat([model.conv.weight.reshape(-1), model.fc.weight.reshape(-1)]).detach().numpy()
    )
    slow, _, _ = gradient_matrix(
        model, F.cross_entropy, (X, y), n_samples=20, vectorize=False, dtype=np.float64
    )
    np.testing.assert_allclose(slow, G, rtol=1e-4, atol=1e-6)


def test_mini_batch_rows_are_mean_gradients(trained):
    model, X, y = fresh(trained)
    names = selected_params(model)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X[:60], y[:60]), batch_size=7
    )  # batches straddle rows on purpose
    G, _, _ = gradient_matrix(model, F.cross_entropy, loader, n_samples=12, mini_batch=5)
    np.testing.assert_allclose(
        G, manual_rows(model, X[:60], y[:60], names, m=5), rtol=1e-4, atol=1e-6
    )


def test_gradient_matrix_leaves_the_model_alone(trained):
    model, X, y = fresh(trained)
    model.train()
    model[0].bias.requires_grad_(False)
    before = state_of(model)
    gradient_matrix(model, F.cross_entropy, (X, y), n_samples=50)
    assert_same_state(before, state_of(model))


class _Reused(nn.Module):
    """One nn.Linear applied twice (as a recurrent cell is): one module, two names."""

    def __init__(self):
        super().__init__()
        self.cell = nn.Linear(12, 12)
        self.again = self.cell
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.again(torch.tanh(self.cell(x)))))


def test_a_module_used_twice_is_pruned_once_and_stays_a_parameter():
    """torch.func.functional_call's weight tying restored the trial tensor into a module
    reached under two names (a plain tensor, no longer a parameter) and write-back then
    failed; the substitution names such a module once."""
    torch.manual_seed(0)
    X, y = make_data(n=400)
    model = _Reused()
    before = state_of(model)
    gradient_matrix(model, F.cross_entropy, (X, y), n_samples=20)
    assert_same_state(before, state_of(model))  # gradients and evaluation leave it intact
    report = prune(model, F.cross_entropy, (X, y), sparsity=0.5, progress=False)
    assert isinstance(model.cell.weight_orig, nn.Parameter) and model.again is model.cell
    assert selected_params(model) == ["cell.weight", "head.weight"]
    assert np.count_nonzero(report.weights) == report.k
    flat = torch.cat([model.cell.weight.flatten(), model.head.weight.flatten()])
    np.testing.assert_allclose(flat.detach().numpy(), report.weights, rtol=1e-6, atol=1e-7)


def test_a_parameter_shared_by_two_modules_is_substituted_in_both():
    """dec.weight is enc.weight: trial weights for the selected name reach both modules,
    as the written weights will."""
    from chita_opt.adapters.torch._adapter import TorchAdapter

    torch.manual_seed(0)
    enc, dec = nn.Linear(12, 12), nn.Linear(12, 12)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.Tanh(), dec, nn.Tanh(), nn.Linear(12, 4))
    X, y = make_data(n=64)
    adapter = TorchAdapter(model, F.cross_entropy, select=["0.weight"])
    w = np.random.default_rng(0).standard_normal(144) * (np.arange(144) % 3 == 0)
    score = adapter.evaluate(w, [(X, y)])
    both = copy.deepcopy(model)
    with torch.no_grad():
        both[0].weight.copy_(torch.as_tensor(w.reshape(12, 12), dtype=torch.float32))
    assert both[2].weight is both[0].weight
    assert score.loss == pytest.approx(float(F.cross_entropy(both(X), y)), rel=1e-5)
    assert isinstance(model[0].weight, nn.Parameter) and model[2].weight is model[0].weight


# ---------------------------------------------------------------- pruning
def test_chita_beats_magnitude_and_keeps_exactly_k(trained):
    train_loss, test_loss = {}, {}
    for method in ("magnitude", "chita"):
        model, X, y = fresh(trained)
        biases = [model[i].bias.detach().clone() for i in (0, 2, 4)]
        rep = prune(
            model,
            F.cross_entropy,
            (X[:800], y[:800]),
            sparsity=0.75,
            method=method,
            n_samples=64,
            progress=False,
        )
        p = sum(model[i].weight.numel() for i in (0, 2, 4))
        k = k_from_sparsity(p, 0.75)
        kept = sum(int(torch.count_nonzero(model[i].weight)) for i in (0, 2, 4))
        assert rep.k == k and rep.p == p and kept == k
        assert rep.achieved_sparsity == pytest.approx(1 - k / p)
        assert all(torch.equal(model[i].bias, b) for i, b in zip((0, 2, 4), biases, strict=True))
        train_loss[method] = loss_of(model, X[:800], y[:800])
        test_loss[method] = loss_of(model, X[800:], y[800:])
    assert train_loss["chita"] < train_loss["magnitude"]
    assert test_loss["chita"] < test_loss["magnitude"]


def test_masks_survive_optimizer_steps_and_can_be_made_permanent(trained):
    model, X, y = fresh(trained)
    rep = prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.8,
        method="backsolve",
        n_samples=100,
        progress=False,
    )
    mask_before = {k: v.clone() for k, v in masks(model).items()}
    assert set(mask_before) == {"0.weight", "2.weight", "4.weight"}
    assert sum(int(m.sum()) for m in mask_before.values()) == rep.k
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    model.train()
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        apply_masks(model)
    model(X)  # the pre-hook recomputes module.weight
    for name, m in mask_before.items():
        layer = model[int(name.split(".")[0])]
        assert not layer.weight[~m].any()
        assert not layer.weight_orig[~m].any()
        assert layer.weight[m].abs().sum() > 0
    assert make_permanent(model) == ["0.weight", "2.weight", "4.weight"]
    assert [n for n, _ in model.named_parameters()] == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "4.weight",
        "4.bias",
    ]
    assert sum(int(torch.count_nonzero(model[i].weight)) for i in (0, 2, 4)) <= rep.k
    assert masks(model) == {}


def test_pruning_again_keeps_old_zeros_and_shrinks_masks(trained):
    model, X, y = fresh(trained)
    prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.5,
        n_samples=100,
        method="backsolve",
        progress=False,
    )
    first = {k: v.clone() for k, v in masks(model).items()}
    rep = prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.8,
        stages=2,
        n_samples=100,
        method="backsolve",
        progress=False,
    )
    second = masks(model)
    for k in first:
        assert not (second[k] & ~first[k]).any()  # nothing revived
    assert sum(int(m.sum()) for m in second.values()) == rep.k
    assert next(n for n, _ in model.named_parameters()) == "0.weight_orig"


def test_params_by_name_and_predicate(trained):
    model, X, y = fresh(trained)
    assert selected_params(model, lambda n, t: n.startswith("4.")) == ["4.weight", "4.bias"]
    rep = prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.5,
        params=["2.weight"],
        n_samples=80,
        method="backsolve",
        progress=False,
    )
    assert rep.p == 16 * 8 and [la.name for la in rep.layers] == ["2.weight"]
    assert int(torch.count_nonzero(model[2].weight)) == rep.k
    assert not hasattr(model[0], "weight_orig")


# tiny synthetic nets move far from their weights: the warning is expected
@pytest.mark.filterwarnings("ignore::chita_opt.pruning.ModelValidityWarning")
def test_multistage_with_first_order_and_blocks_runs_and_records_settings(trained):
    model, X, y = fresh(trained)
    rep = prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.8,
        stages=3,
        first_order=True,
        mini_batch=2,
        n_samples=60,
        block_size=64,
        method="backsolve",
        damping=1e-3,
        progress=False,
    )
    assert len(rep.stages) == 3 and all(r.n_blocks > 1 for r in rep.stages)
    # the first-order guard ran at every stage (held-out share of the data)
    assert all(r.first_order_used is not None for r in rep.stages)
    assert rep.options["first_order_scale"] == 0.5 and rep.options["mini_batch"] == 2
    assert sum(int(torch.count_nonzero(model[i].weight)) for i in (0, 2, 4)) == rep.k
    assert "stage" in str(rep)


def test_select_damping_ranks_like_auto_and_matches_prune(trained):
    model, X, y = fresh(trained)
    sel = select_damping(
        model,
        F.cross_entropy,
        (X[:300], y[:300]),
        (X[300:], y[300:]),
        sparsity=0.8,
        grid=[1e-5, 1e-2, 10.0],
        n_samples=100,
        method="backsolve",
    )
    assert masks(model) == {}  # select_damping does not prune the model
    # class-index targets: ranked by (held-out error, loss), as damping="auto" ranks
    assert set(sel.errors) == set(sel.losses) == {1e-5, 1e-2, 10.0}
    assert (sel.errors[sel.damping], sel.losses[sel.damping]) == min(
        (sel.errors[d], sel.losses[d]) for d in sel.losses)
    assert sel.report.options["damping_errors"] == {f"{d:g}": e for d, e in sel.errors.items()}
    rep = prune(
        model,
        F.cross_entropy,
        (X[:300], y[:300]),
        sparsity=0.8,
        damping="auto",
        damping_grid=[1e-5, 1e-2, 10.0],
        held_out=(X[300:], y[300:]),
        n_samples=100,
        method="backsolve",
        progress=False,
    )
    assert rep.options["damping"] == sel.damping
    assert held_out_loss(model, F.cross_entropy, (X[300:], y[300:])) == pytest.approx(
        sel.losses[sel.damping], rel=1e-5
    )


# ---------------------------------------------------------------- transactions
def test_a_failure_at_stage_two_leaves_the_model_untouched(trained):
    model, X, y = fresh(trained)
    model.train()
    model[2].bias.requires_grad_(False)
    prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.3,
        n_samples=50,
        progress=False,
        method="backsolve",
        params=["4.weight"],
    )  # an existing mask must survive too
    before = state_of(model)
    calls = {"n": 0}

    def flaky_loss(out, target):
        calls["n"] += 1  # one call per stage: one vectorised chunk of 50 rows
        if calls["n"] == 2:
            raise ArithmeticError("loss exploded at stage 2")
        return F.cross_entropy(out, target)

    with pytest.raises(ArithmeticError, match="loss exploded") as info:
        prune(
            model,
            flaky_loss,
            (X, y),
            sparsity=0.9,
            stages=3,
            n_samples=50,
            method="backsolve",
            damping=1e-3,
            progress=False,
        )
    assert any("stage 2" in n for n in info.value.__notes__)
    assert any("restored" in n for n in info.value.__notes__)
    assert_same_state(before, state_of(model))


def test_a_failure_while_writing_back_rolls_back(trained, monkeypatch):
    model, X, y = fresh(trained)
    before = state_of(model)
    weight_objects = [id(model[i].weight) for i in (0, 2, 4)]
    real = torch_prune.custom_from_mask
    calls = {"n": 0}

    def failing(module, name, mask):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(module, name, mask)

    monkeypatch.setattr(tstate.torch_prune, "custom_from_mask", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        prune(
            model,
            F.cross_entropy,
            (X, y),
            sparsity=0.5,
            n_samples=50,
            method="backsolve",
            progress=False,
        )
    assert calls["n"] == 3  # two layers were already pruned when it failed
    assert_same_state(before, state_of(model))
    assert [id(model[i].weight) for i in (0, 2, 4)] == weight_objects
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_gradual_prune_fine_tunes_with_masks_and_restores_on_failure(trained):
    model, X, y = fresh(trained)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=64, shuffle=True
    )
    rep = gradual_prune(
        model,
        F.cross_entropy,
        (X, y),
        sparsity=0.85,
        optimizer=opt,
        pruning_steps=3,
        fine_tune_steps=15,
        train_data=loader,
        n_samples=80,
        method="backsolve",
        progress=False,
    )
    assert len(rep.reports) == 3 and rep.levels[-1] == 0.85
    assert [len(losses) for losses in rep.train_losses] == [15, 15, 15]
    final_k = rep.reports[-1].k
    kept = sum(int(torch.count_nonzero(model[i].weight_orig)) for i in (0, 2, 4))
    assert kept <= final_k  # fine-tuning did not revive pruned weights
    now = torch.cat([model[i].weight_orig.detach().reshape(-1) for i in (0, 2, 4)]).numpy()
    after_pruning = rep.reports[-1].weights
    assert not np.allclose(now, after_pruning)  # the last fine-tuning phase trained them
    assert not now[~rep.reports[-1].mask].any()
    assert "pruning steps" in str(rep)

    model2, X, y = fresh(trained)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
    before = state_of(model2)
    state_before = copy.deepcopy(opt2.state_dict())

    class Broken:
        def __iter__(self):
            yield X[:64], y[:64]
            raise OSError("data source vanished")

    with pytest.raises(OSError, match="vanished"):
        gradual_prune(
            model2,
            F.cross_entropy,
            (X, y),
            sparsity=0.8,
            optimizer=opt2,
            pruning_steps=2,
            fine_tune_steps=5,
            train_data=Broken(),
            n_samples=50,
            method="backsolve",
            progress=False,
        )
    assert_same_state(before, state_of(model2))
    assert opt2.state_dict()["state"] == state_before["state"]


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"sparsity": 1.5}, ValueError, r"sparsity: expected a number in \[0, 1\), got 1.5"),
        ({"params": ["nope.weight"]}, ValueError, "params: no floating-point parameter named"),
        ({"params": lambda n, t: False}, ValueError, "params: no parameters selected"),
        ({"n_samples": 0}, ValueError, "n_samples: expected a positive integer"),
        ({"n_samples": 10_000}, ValueError, r"data: expected at least n_samples \* mini_batch"),
        ({"damping": "big"}, ValueError, "damping: expected a non-negative number or 'auto'"),
        ({"held_out_fraction": 0}, ValueError, r"held_out_fraction: expected a number in \(0, 1\)"),
        ({"method": "nope"}, ValueError, "method: expected one of"),
        ({"stages": 0}, ValueError, "stages: expected a positive integer"),
        ({"schedule": "cosine", "stages": 2}, ValueError, "schedule: expected one of"),
        ({"first_order": "yes"}, TypeError, "first_order: expected a bool"),
    ],
)
def test_bad_arguments_raise_clear_errors_and_change_nothing(trained, kwargs, exc, match):
    model, X, y = fresh(trained)
    before = state_of(model)
    args = {"sparsity": 0.5, "n_samples": 20, "progress": False, "method": "backsolve", **kwargs}
    with pytest.raises(exc, match=match):
        prune(model, F.cross_entropy, (X, y), **args)
    assert_same_state(before, state_of(model))


def test_bad_model_data_and_loss_are_named(trained):
    model, X, y = fresh(trained)
    with pytest.raises(TypeError, match=r"model: expected a torch\.nn\.Module"):
        prune("model", F.cross_entropy, (X, y), sparsity=0.5)
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        prune(model, "ce", (X, y), sparsity=0.5)
    ds = torch.utils.data.TensorDataset(X, y)
    with pytest.raises(TypeError, match=r"wrap it in torch\.utils\.data\.DataLoader"):
        prune(model, F.cross_entropy, ds, sparsity=0.5, n_samples=10, progress=False)
    with pytest.raises(TypeError, match=r"data: expected a DataLoader .* batch 0 is"):
        prune(model, F.cross_entropy, [X, y, X], sparsity=0.5, n_samples=10, progress=False)
    with pytest.raises(ValueError, match="same leading"):
        prune(model, F.cross_entropy, (X, y[:5]), sparsity=0.5, n_samples=10, progress=False)
    with pytest.raises(RuntimeError) as info:  # a loss that is not a scalar
        prune(
            model,
            lambda o, t: F.cross_entropy(o, t, reduction="none"),
            (X, y),
            sparsity=0.5,
            n_samples=10,
            progress=False,
        )
    assert any("must return a scalar" in n for n in info.value.__notes__)
    assert masks(model) == {}


def test_parametrized_weights_and_one_shot_iterators_are_explained(trained):
    from torch.nn.utils import parametrize

    model, X, y = fresh(trained)

    class Identity(nn.Module):
        def forward(self, w):
            return w

    parametrize.register_parametrization(model[2], "weight", Identity())
    with pytest.raises(ValueError, match=r"select: the weights of \['2'\] are parametrized"):
        prune(model, F.cross_entropy, (X, y), sparsity=0.5, n_samples=10, progress=False)
    assert selected_params(model, ["0.weight", "4.weight"]) == ["0.weight", "4.weight"]
    # the parametrization's original tensor is not offered as a prunable tensor
    assert "2.parametrizations.weight.original" not in selected_params(model, lambda n, t: True)

    model, X, y = fresh(trained)
    # Readable once: both stages use the samples read at the first (as in the JAX adapter).
    batches = iter([(X[:30], y[:30]), (X[30:50], y[30:50])])
    report = prune(
        model,
        F.cross_entropy,
        batches,
        sparsity=0.5,
        stages=2,
        n_samples=50,
        method="backsolve",
        damping=1e-3,
        progress=False,
    )
    assert report.options["sampling"] == "once"
    assert [r.n_rows for r in report.stages] == [50, 50]
    assert set(masks(model)) == {"0.weight", "2.weight", "4.weight"}
