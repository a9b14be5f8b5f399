"""The ``chita-opt`` command line, run in-process through ``main(argv)``.

Conventions checked (docs/cli.md): a usage error exits with status 2 and one
``error:`` line on stderr, a file error with status 1 and one line on stderr,
never a traceback; ``chita-opt solve`` writes what ``chita_opt.solve`` returns.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import chita_opt
from chita_opt.cli import main
from chita_opt.reference import EXACT_METHODS

from . import oracle


def run_cli(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``chita-opt argv``, SystemExit included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, command, option):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"usage: chita-opt {command}")
    assert lines[-1].startswith(f"chita-opt {command}: error: ")
    assert option in lines[-1]


def assert_file_error(code, err, command, *fragments):
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"chita-opt {command}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


# ------------------------------------------------------------------ top level
def test_no_subcommand_prints_the_help(capsys):
    code, out, _ = run_cli([], capsys)
    assert code == 0 and out.startswith("usage: chita-opt")
    for name in ("solve", "compare", "validate", "demo"):
        assert name in out


def test_unknown_subcommand_is_a_usage_error(capsys):
    code, _, err = run_cli(["frobnicate"], capsys)
    assert code == 2 and "invalid choice: 'frobnicate'" in err and "Traceback" not in err


# -------------------------------------------------------------------- compare
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--k", "-1"], "--k"),
        (["--k", "31", "--p", "30"], "--k"),
        (["--p", "0"], "--p"),
        (["--n", "0"], "--n"),
        (["--rho", "2"], "--rho"),
        (["--rho", "-1"], "--rho"),
        (["--l2", "-1"], "--l2"),
        (["--l2", "nan"], "--l2"),
        (["--l2", "inf"], "--l2"),
        (["--seed", "-1"], "--seed"),
        (["--snr", "nan"], "--snr"),
        (["--snr", "0"], "--snr"),
        (["--snr", "abc"], "--snr"),
        (["--methods", "magnitude,magic"], "--methods"),
        (["--methods", ","], "--methods"),
        (["--n", "100000", "--p", "100000"], "--n, --p"),
        (["--methods", "brute_force", "--n", "10", "--p", "40", "--k", "20"], "--methods"),
    ],
)
def test_compare_rejects_bad_arguments(args, option, capsys):
    code, _, err = run_cli(["compare", *args], capsys)
    assert_usage_error(code, err, "compare", option)


def test_compare_default_methods_come_from_the_registry(capsys):
    from chita_opt._cli.compare import heuristic_methods

    expected = [m for m in chita_opt.available_methods() if m not in EXACT_METHODS]
    assert heuristic_methods() == expected and "chita" in expected
    code, out, err = run_cli(["compare", "--n", "30", "--p", "12", "--k", "3"], capsys)
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert rows == expected


def _mostly(valid, invalid):
    """Text from ``valid`` nine times in ten (so that runs with all-valid options occur)."""
    return st.integers(0, 9).flatmap(lambda i: invalid if i == 0 else valid)


_BAD_TEXT = st.sampled_from(["nan", "inf", "-inf", "-1", "1.5", "x", "", "1e400", "-0.5"])
_INT_TEXT = _mostly(st.integers(0, 30).map(str), _BAD_TEXT)
_FLOAT_TEXT = _mostly(st.floats(0, 0.99).map(repr), _BAD_TEXT)


def _valid_int(text, low, high=math.inf):
    try:
        value = int(text)
    except ValueError:
        return False
    return low <= value <= high


def _valid_float(text, ok):
    try:
        value = float(text)
    except ValueError:
        return False
    return ok(value)


# run_cli reads (and so resets) capsys after every call: sharing it is safe.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(n=_INT_TEXT, p=_INT_TEXT, k=_INT_TEXT, rho=_FLOAT_TEXT, snr=_FLOAT_TEXT, l2=_FLOAT_TEXT,
       seed=_INT_TEXT)
def test_compare_arguments_property(n, p, k, rho, snr, l2, seed, capsys):
    """Any option values: status 0 exactly when all are valid, else a clean usage error."""
    argv = ["compare", "--n", n, "--p", p, "--k", k, "--rho", rho, "--snr", snr, "--l2", l2,
            "--seed", seed, "--methods", "magnitude,backsolve"]
    valid = (
        _valid_int(n, 1) and _valid_int(p, 1) and _valid_int(k, 0)
        and _valid_int(seed, 0) and int(k) <= int(p)
        and _valid_float(rho, lambda v: -1 < v < 1)
        and _valid_float(snr, lambda v: v > 0)  # inf: no noise
        and _valid_float(l2, lambda v: 0 <= v < math.inf)
    )
    code, out, err = run_cli(argv, capsys)
    event(f"valid: {valid}")
    assert "Traceback" not in err
    if valid:
        assert code == 0, err
        assert "magnitude" in out and "backsolve" in out
    else:
        assert code == 2, (argv, out)
        assert err.strip().splitlines()[-1].startswith("chita-opt compare: error: argument")


# ---------------------------------------------------------------------- solve
@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((25, 8))
    y = A[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(25)
    np.savez(tmp_path / "data.npz", A=A, y=y)
    return tmp_path, A, y


def test_solve_npz_to_json_matches_the_library(data, capsys):
    tmp, A, y = data
    out_file = tmp / "w.json"
    code, out, err = run_cli(
        ["solve", tmp / "data.npz", "--k", "3", "--method", "backsolve", "--output", out_file],
        capsys,
    )
    assert code == 0, err
    expected = chita_opt.solve(A, y, 3, method="backsolve")
    doc = json.loads(out_file.read_text())
    np.testing.assert_array_equal(doc["w"], expected.w)
    assert doc["support"] == expected.support.tolist()
    assert doc["objective"] == expected.objective and doc["status"] == expected.status
    assert doc["nnz"] == expected.support.size and doc["k"] == 3
    for key in ("status:", "objective:", "nnz:", "time_s:"):
        assert key in out


def test_solve_csv_and_npy_brute_force_is_the_oracle_optimum(data, capsys):
    tmp, A, y = data
    np.savetxt(tmp / "A.csv", A, delimiter=",", header=",".join(f"a{i}" for i in range(8)),
               comments="")
    np.save(tmp / "y.npy", y)
    np.savetxt(tmp / "wb.csv", np.full((1, 8), 0.5), delimiter=",")  # a row vector
    code, _, err = run_cli(
        ["solve", "--A", tmp / "A.csv", "--y", tmp / "y.npy", "--w-bar", tmp / "wb.csv",
         "--sparsity", "0.625", "--l2", "0.3", "--method", "brute_force",
         "--output", tmp / "w.npz"],
        capsys,
    )
    assert code == 0, err
    with np.load(tmp / "w.npz") as saved:
        w, status, objective = saved["w"], str(saved["status"]), float(saved["objective"])
    inst = oracle.Instance(A, y, 3, 0.3, np.full(8, 0.5), None)
    f_star, _ = oracle.brute_force(inst)
    assert status == "optimal" and np.count_nonzero(w) <= 3
    assert abs(objective - f_star) <= 1e-9 * abs(f_star)
    assert abs(oracle.objective(inst, w) - f_star) <= 1e-9 * abs(f_star)


def test_solve_file_errors_exit_1_with_one_line(data, capsys):
    tmp, _, _ = data
    (tmp / "bad.npz").write_bytes(b"not a zip")
    (tmp / "bad.csv").write_text("1,2\n3,x\n")
    np.save(tmp / "y_long.npy", np.ones(26))
    (tmp / "dir.json").mkdir()
    cases = [
        (["solve", tmp / "missing.npz", "--k", "2"], ["DATA", "no such file"]),
        (["solve", tmp / "bad.npz", "--k", "2"], ["DATA", "not a valid .npz file"]),
        (["solve", "--A", tmp / "bad.csv", "--y", tmp / "y_long.npy", "--k", "1"],
         ["--A", "not a valid .csv file"]),
        (["solve", tmp / "data.npz", "--y", tmp / "y_long.npy", "--k", "1"],
         ["y: expected length 25, got length 26"]),
        (["solve", tmp / "data.npz", "--k", "1", "--output", tmp / "no" / "w.json"],
         ["--output", "no such directory"]),
        (["solve", tmp / "data.npz", "--k", "1", "--output", tmp / "dir.json"],
         ["--output", "is a directory"]),
    ]
    for argv, fragments in cases:
        code, _, err = run_cli(argv, capsys)
        assert_file_error(code, err, "solve", *fragments)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        ([], "--k --sparsity"),
        (["--k", "9"], "--k"),
        (["--k", "-1"], "--k"),
        (["--sparsity", "1"], "--sparsity"),
        (["--k", "2", "--l2", "nan"], "--l2"),
        (["--k", "2", "--method", "magic"], "--method"),
        (["--k", "2", "--output", "w.txt"], "--output"),
        (["--k", "2", "--method", "iht", "--time-limit", "3"], "--time-limit"),
        (["--k", "2", "--time-limit", "0"], "--time-limit"),
    ],
)
def test_solve_usage_errors_exit_2(data, args, option, capsys):
    tmp, _, _ = data
    code, _, err = run_cli(["solve", tmp / "data.npz", *args], capsys)
    assert_usage_error(code, err, "solve", option)


def test_solve_needs_a_and_y(tmp_path, capsys):
    np.savez(tmp_path / "only_a.npz", A=np.eye(3))
    code, _, err = run_cli(["solve", tmp_path / "only_a.npz", "--k", "1"], capsys)
    assert_usage_error(code, err, "solve", "--y")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(k=_INT_TEXT, l2=_FLOAT_TEXT, method=st.sampled_from(["magnitude", "iht", "x", ""]))
def test_solve_arguments_property(data, k, l2, method, capsys):
    tmp, _, _ = data
    argv = ["solve", tmp / "data.npz", "--k", k, "--l2", l2, "--method", method]
    valid = (_valid_int(k, 0, 8) and _valid_float(l2, lambda v: 0 <= v < math.inf)
             and method in ("magnitude", "iht"))
    code, out, err = run_cli(argv, capsys)
    event(f"valid: {valid}")
    assert "Traceback" not in err
    if valid:
        assert code == 0 and "status:" in out, err
    else:
        assert code == 2 and err.strip().splitlines()[-1].startswith("chita-opt solve: error:")


# ----------------------------------------------------------------------- demo
def test_demo_unwritable_output_is_a_file_error(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    code, _, err = run_cli(["demo", "--output", tmp_path / "a_file" / "sub"], capsys)
    assert_file_error(code, err, "demo", "--output", "a_file")


def test_demo_damping_column_names_a_fallback_to_one_shot_weights():
    """The demo table's damping is the returned weights' damping: a CHITA++ run that fell
    back to the one-shot prune (damping="auto") shows that damping and says so."""
    from types import SimpleNamespace

    from chita_opt._cli.demo import _dampings

    stages = [SimpleNamespace(damping=d) for d in (1e-6, 2e-7, 3e-8)]
    assert _dampings(SimpleNamespace(options={}, stages=stages)) == "1e-06..3e-08"
    fell_back = SimpleNamespace(options={"fallback": "one-shot", "damping": 4.5e-8},
                                stages=stages)
    assert _dampings(fell_back) == "4.5e-08 (one-shot)"
    magnitude = SimpleNamespace(options={"fallback": "magnitude", "damping": float("inf")},
                                stages=stages)
    assert _dampings(magnitude) == "inf (magnitude)"


def test_demo_corrupt_checkpoint_is_a_file_error(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("mlxtend")
    (tmp_path / "bad.pt").write_bytes(b"this is not a checkpoint")
    code, _, err = run_cli(["demo", "--checkpoint", tmp_path / "bad.pt", "--output",
                            tmp_path / "o", "--no-progress"], capsys)
    assert_file_error(code, err, "demo", "--checkpoint", "bad.pt")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), a_fmt=st.sampled_from(["npy", "npz", "csv"]),
       y_fmt=st.sampled_from(["npy", "npz", "csv", "csv-row"]), with_c=st.booleans())
def test_solve_reads_every_format_exactly(tmp_path_factory, seed, a_fmt, y_fmt, with_c, capsys):
    """Whatever the file formats, the CLI solves the very problem the arrays make."""
    tmp = tmp_path_factory.mktemp("fmt")
    rng = np.random.default_rng(seed)
    n, p = int(rng.integers(2, 12)), int(rng.integers(2, 7))
    A, y = rng.standard_normal((n, p)), rng.standard_normal(n)
    c = rng.standard_normal(p) if with_c else None

    def save(name, arr, fmt):
        path = tmp / f"{name}.{fmt.split('-')[0]}"
        if fmt == "npy":
            np.save(path, arr)
        elif fmt == "npz":
            np.savez(path, **{name: arr})
        else:  # repr-exact text: '%.17g' round-trips float64
            rows = arr[None, :] if fmt == "csv-row" else arr
            np.savetxt(path, rows, delimiter=",", fmt="%.17g")
        return path

    argv = ["solve", "--A", save("A", A, a_fmt), "--y", save("y", y, y_fmt), "--k", "1",
            "--l2", "0.5", "--method", "brute_force", "--output", tmp / "w.json"]
    if c is not None:
        argv += ["--c", save("c", c, "csv")]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    doc = json.loads((tmp / "w.json").read_text())
    expected = chita_opt.solve(A, y, 1, l2=0.5, c=c, method="brute_force")
    assert doc["objective"] == expected.objective and doc["w"] == expected.w.tolist()
