"""Every Numba kernel path, recompiled with bounds checking, on varied shapes.

The kernels index raw arrays without checks for speed, so an index bug would
corrupt memory or crash rather than raise. Here a fresh process compiles them
with ``NUMBA_BOUNDSCHECK=1`` (into an empty cache, so no unchecked build is
reused) and runs every solver and the multi-stage loop: an out-of-range index
becomes an ``IndexError`` and fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import chita_opt as co
    from chita_opt._kernels.linalg import support_matvec
    from chita_opt.pruning import multistage_prune

    # The checks are really on: a bad index raises instead of reading garbage.
    try:
        support_matvec(np.ones((3, 4)), np.array([10]), np.array([1.0]))
    except IndexError:
        pass
    else:
        raise SystemExit("bounds checking is not active")

    rng = np.random.default_rng(0)
    methods = [m for m in co.available_methods() if m not in ("mip", "brute_force")]
    for dtype in (np.float32, np.float64):
        for order in "CF":
            for n, p, k in ((20, 60, 5), (30, 200, 40), (10, 50, 30), (5, 8, 8), (40, 12, 1)):
                A = np.asarray(rng.standard_normal((n, p)), dtype=dtype, order=order)
                y = rng.standard_normal(n)
                for l2 in (0.0, 0.1):
                    for m in methods:
                        co.solve(A, y, k, method=m, l2=l2, w_bar=rng.standard_normal(p),
                                 c=0.01 * rng.standard_normal(p))
    X = rng.standard_normal((40, 30))
    t = rng.standard_normal(40)
    w0 = np.linalg.lstsq(X, t, rcond=None)[0]

    def gradients(w, columns):
        return ((X @ w - t)[:, None] * X)[:, columns]

    multistage_prune(w0, gradients, sparsity=0.8, stages=4, progress=False, block_size=10)
    multistage_prune(w0, gradients, sparsity=0.9, stages=4, progress=False, first_order=True)
    print("all kernels ran with bounds checking")
    """
)


def test_every_solver_runs_clean_with_numba_bounds_checking(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all kernels ran with bounds checking" in proc.stdout
