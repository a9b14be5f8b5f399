"""Time of ``solve_layer`` with the numpy/LAPACK primitives vs the torch backend.

For a few random layer shapes (H = X^T X of 4 d_in Gaussian samples, 50 %
whole-layer sparsity, damping 1e-2 mean diag, ``method="chita"`` at its
defaults) prints the median wall time of ``solve_layer(..., device=None)``
and ``solve_layer(..., device=D)`` for each torch device D asked for (default
"cpu"), measured in this run after one warm-up, their ratio, and whether the
masks agree. CPU only unless ``--devices cuda`` is given on a machine with a
GPU; nothing here says anything about a GPU that was not measured.

    python benchmarks/layer_backend.py                      # 512x128, 128x512, 256x256
    python benchmarks/layer_backend.py --devices cpu cuda   # where CUDA is present
    python benchmarks/layer_backend.py --smoke              # tiny, seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import print_header, print_table, time_call

from chita_opt.layerwise import Budget, solve_layer


def _layer(d_out: int, d_in: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4 * d_in, d_in))
    return X.T @ X, rng.standard_normal((d_out, d_in))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny layers, a few seconds")
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="torch devices to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shapes = [(32, 16), (16, 32)] if args.smoke else [(512, 128), (128, 512), (256, 256)]
    repeats = 1 if args.smoke else args.repeats
    import torch  # the backend needs it; imported only to report its version

    print_header(f"solve_layer numpy vs torch backend (chita, 50% layer budget), "
                 f"torch {torch.__version__}, threads {torch.get_num_threads()}",
                 packages=("numpy", "scipy", "torch"))
    rows = []
    for d_out, d_in in shapes:
        H, W = _layer(d_out, d_in)
        budget = Budget.layer(d_out * d_in // 2)
        damp = 1e-2 * float(np.diag(H).mean())

        def run(device, H=H, W=W, budget=budget, damp=damp):
            return solve_layer(H, W, budget, damping=damp, device=device)

        ref = time_call(lambda: run(None), repeats=repeats)
        for dev in args.devices:
            got = time_call(lambda dev=dev: run(dev), repeats=repeats)
            rows.append([f"{d_out}x{d_in}", dev, ref.median, got.median,
                         got.median / ref.median,
                         bool(np.array_equal(got.result.mask, ref.result.mask)),
                         got.result.objective / ref.result.objective - 1.0])
    print_table(["layer", "device", "numpy s", "torch s", "torch/numpy", "same mask",
                 "rel. objective diff"], rows)


if __name__ == "__main__":
    main()
