"""The validation harness and its CLI subcommand."""

from __future__ import annotations

import numpy as np
import pytest

from chita_opt import L0Problem
from chita_opt.cli import main
from chita_opt.datasets import make_regression
from chita_opt.reference import brute_force
from chita_opt.solvers import _REGISTRY
from chita_opt.validate import ValidationReport, relative_gap, validate


def test_report_against_brute_force():
    report = validate(
        ["magnitude", "backsolve", "brute_force"], p=8, k=3, instances=4, random_state=1
    )
    assert isinstance(report, ValidationReport)
    assert report.reference == "brute_force" and report.n_certified == 4
    exact = report.summary("brute_force")
    assert exact.share_optimal == 1.0 and exact.worst_gap == 0.0 and exact.n_optimal == 4
    for name in ("magnitude", "backsolve"):
        row = report.summary(name)
        gaps = report.gaps[name]
        # gaps are recomputed from the stored objectives and never negative
        assert np.all(gaps >= -1e-9)
        assert row.worst_gap == pytest.approx(float(np.max(gaps)))
        assert row.mean_gap == pytest.approx(float(np.mean(np.maximum(gaps, 0))))
        assert row.n_optimal == int(np.sum(gaps <= report.tol))
        assert row.mean_time > 0
    # backsolve refits the magnitude support exactly: never worse
    assert np.all(report.objectives["backsolve"] <= report.objectives["magnitude"] + 1e-9)


def test_same_seed_same_suite():
    a = validate("magnitude", p=7, k=2, instances=3, random_state=5, warmup=False)
    b = validate("magnitude", p=7, k=2, instances=3, random_state=5, warmup=False)
    c = validate("magnitude", p=7, k=2, instances=3, random_state=6, warmup=False)
    np.testing.assert_array_equal(a.reference_objectives, b.reference_objectives)
    assert not np.array_equal(a.reference_objectives, c.reference_objectives)


def test_reference_objectives_are_the_optimum():
    problems = [make_regression(12, 7, 2, random_state=s).problem(2, l2=0.1) for s in range(3)]
    report = validate(["backsolve"], problems=problems, warmup=False)
    for pr, f in zip(problems, report.reference_objectives, strict=True):
        assert f == pytest.approx(brute_force(pr).objective, rel=1e-12)
    assert "3 user-supplied problems" in str(report)


def test_mip_reference():
    report = validate(
        ["backsolve"], p=10, k=3, instances=2, reference="mip", random_state=0, warmup=False
    )
    assert report.reference == "mip"
    assert report.n_certified == 2
    for pr_seed in range(2):
        assert np.isfinite(report.reference_objectives[pr_seed])
    assert np.all(report.gaps["backsolve"] >= -1e-6)


def test_failing_method_is_counted_not_fatal(monkeypatch):
    def broken(problem):
        raise RuntimeError("boom")

    monkeypatch.setitem(_REGISTRY, "broken_for_test", broken)
    report = validate(["broken_for_test", "backsolve"], p=6, k=2, instances=2, warmup=False)
    row = report.summary("broken_for_test")
    assert row.n_errors == 2 and row.n_optimal == 0 and np.isnan(row.mean_gap)
    assert report.summary("backsolve").n_errors == 0


def test_tables():
    report = validate(["magnitude", "backsolve"], p=6, k=2, instances=2, warmup=False)
    text = report.to_table()
    assert text.splitlines()[0].split()[:3] == ["method", "optimal", "share"]
    assert "magnitude" in text and "[brute_force]" in text and "2/2 certified" in text
    md = report.to_table("markdown")
    assert md.startswith("| method | optimal |") and md.count("\n") == 4
    assert str(report).startswith("2 instances, n=12, p=6, k=2")
    with pytest.raises(ValueError, match="fmt: expected 'text' or 'markdown', got 'html'"):
        report.to_table("html")
    with pytest.raises(KeyError, match="method: expected one of"):
        report.summary("iht")


def test_relative_gap_floor():
    assert relative_gap(2.0, 1.0, 10.0) == pytest.approx(1.0)
    assert relative_gap(-0.5, -1.0, 10.0) == pytest.approx(0.5)
    # optimum 0 (perfect fit): judged on the scale of f(0)
    assert relative_gap(1e-8, 0.0, 100.0) == pytest.approx(1e-8 / 1e-4)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"methods: expected names from .*got 'nope'"):
        validate(["nope"], p=5, k=2, instances=1)
    with pytest.raises(ValueError, match="methods: expected at least one method name"):
        validate([], p=5, k=2, instances=1)
    with pytest.raises(ValueError, match="methods: expected distinct names"):
        validate(["backsolve", "backsolve"], p=5, k=2, instances=1)
    with pytest.raises(ValueError, match=r"reference: expected one of \('auto'"):
        validate(["backsolve"], reference="exact")
    with pytest.raises(ValueError, match=r"k: expected an integer in \[0, 5\], got 9"):
        validate(["backsolve"], p=5, k=9)
    with pytest.raises(ValueError, match="instances: expected a positive integer, got 0"):
        validate(["backsolve"], p=5, k=2, instances=0)
    with pytest.raises(ValueError, match="tol: expected a finite non-negative number"):
        validate(["backsolve"], tol=-1.0)
    with pytest.raises(ValueError, match=r"method_options: expected keys among \['backsolve'\]"):
        validate(["backsolve"], method_options={"iht": {}})
    with pytest.raises(TypeError, match=r"problems\[0\]: expected an L0Problem"):
        validate(["backsolve"], problems=[np.eye(3)])
    with pytest.raises(TypeError, match="does not accept option"):
        validate(["backsolve"], p=5, k=2, instances=1, method_options={"backsolve": {"x": 1}})


def test_cli_prints_table(capsys):
    rc = main(
        ["validate", "--p", "7", "--k", "2", "--instances", "2", "--methods", "magnitude,backsolve"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 instances, n=14, p=7, k=2" in out
    assert "magnitude" in out and "backsolve" in out and "[brute_force]" in out


def test_cli_markdown_and_errors(capsys):
    rc = main(
        [
            "validate",
            "--p",
            "6",
            "--k",
            "2",
            "--instances",
            "1",
            "--methods",
            "backsolve",
            "--markdown",
        ]
    )
    assert rc == 0 and "| backsolve |" in capsys.readouterr().out
    rc = main(["validate", "--methods", "magic"])
    err = capsys.readouterr().err
    assert rc == 2 and "methods: expected names from" in err and "'magic'" in err


def test_l0problem_suite_with_ridge_and_mip_time_limit():
    # a tiny time limit must not raise: uncertified instances are excluded
    problems = [L0Problem(*make_regression(60, 40, 10, snr=1.0, random_state=5)[:2], 10)]
    report = validate(
        ["backsolve"], problems=problems, reference="mip", time_limit=0.2, warmup=False
    )
    assert report.n_instances == 1
    if report.n_certified == 0:
        assert report.summary("backsolve").instances == 0
        assert np.isnan(report.summary("backsolve").share_optimal)
