"""BatchNorm statistics re-estimated at the pruned weights (PyTorch adapter)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from chita_opt.adapters.torch import prune  # noqa: E402


@pytest.fixture(scope="module")
def bn_net():
    torch.manual_seed(0)
    X = torch.randn(600, 10) * 3 + 1
    y = (X[:, 0] - X[:, 1] + 0.5 * X[:, 2] > 1).long()
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    return model, X, y


def stats(model):
    bn = model[1]
    return bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()


def test_pruned_model_gets_statistics_of_its_own_weights(bn_net):
    model, X, y = bn_net
    m = copy.deepcopy(model)
    report = prune(m, F.cross_entropy, (X, y), sparsity=0.8, damping=1e-3, method="backsolve",
                   progress=False)
    assert report.options["batchnorm_recalibrated"] == 1
    new_mean, new_var, _ = stats(m)
    old_mean, old_var, _ = stats(model)
    assert not torch.allclose(new_mean, old_mean)
    # the new statistics describe the pruned first layer's outputs on the data
    with torch.no_grad():
        h = m[0](X)
    np.testing.assert_allclose(new_mean.numpy(), h.mean(0).numpy(), atol=0.15 * h.std().item())
    np.testing.assert_allclose(new_var.numpy(), h.var(0).numpy(), rtol=0.3, atol=1e-3)
    assert not torch.allclose(new_var, old_var)


def test_magnitude_pruning_reestimates_statistics_too(bn_net):
    """method="magnitude" computes no gradients; its BN statistics are still re-estimated
    on samples of the data (they used to stay stale while the report said otherwise)."""
    model, X, y = bn_net
    m = copy.deepcopy(model)
    report = prune(m, F.cross_entropy, (X, y), sparsity=0.8, method="magnitude",
                   progress=False)
    assert report.options["batchnorm_recalibrated"] == 1
    assert report.options["samples_read"] == len(X)
    new_mean, new_var, _ = stats(m)
    with torch.no_grad():
        h = m[0](X)
    np.testing.assert_allclose(new_mean.numpy(), h.mean(0).numpy(), atol=0.15 * h.std().item())
    np.testing.assert_allclose(new_var.numpy(), h.var(0).numpy(), rtol=0.3, atol=1e-3)
    assert not torch.allclose(new_mean, stats(model)[0])
    # too few samples for an explicit n_samples: the error says what they were for
    with pytest.raises(ValueError, match="statistics re-estimated at the pruned weights"):
        prune(copy.deepcopy(model), F.cross_entropy, (X, y), sparsity=0.8, method="magnitude",
              n_samples=10 * len(X), progress=False)
    # the same prune with the re-estimation switched off keeps the old statistics
    m = copy.deepcopy(model)
    prune(m, F.cross_entropy, (X, y), sparsity=0.8, method="magnitude", recalibrate_bn=False,
          progress=False)
    for a, b in zip(stats(m), stats(model), strict=True):
        assert torch.equal(a, b)


def test_switched_off_and_restored_on_failure(bn_net):
    model, X, y = bn_net
    m = copy.deepcopy(model)
    prune(m, F.cross_entropy, (X, y), sparsity=0.8, damping=1e-3, method="backsolve",
          recalibrate_bn=False, progress=False)
    for a, b in zip(stats(m), stats(model), strict=True):
        assert torch.equal(a, b)

    m = copy.deepcopy(model)
    calls = {"n": 0}

    def flaky(out, target):
        calls["n"] += 1
        if calls["n"] == 3:  # during the held-out scoring of the first stage
            raise ArithmeticError("boom")
        return F.cross_entropy(out, target)

    with pytest.raises(ArithmeticError, match="boom"):
        prune(m, flaky, (X, y), sparsity=0.8, progress=False)
    for a, b in zip(stats(m), stats(model), strict=True):
        assert torch.equal(a, b)
    assert m[1].momentum == model[1].momentum and not m[1].training
    with pytest.raises(TypeError, match="recalibrate_bn: expected a bool"):
        prune(m, F.cross_entropy, (X, y), sparsity=0.8, recalibrate_bn="yes")
