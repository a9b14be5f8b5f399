"""One-shot ``prune()`` at its defaults on the model zoo's 24 rows (quick; no oracle).

    python benchmarks/zoo_defaults.py            # test digits
    python benchmarks/zoo_defaults.py --val      # validation digits (to choose settings on)
    python benchmarks/zoo_defaults.py --smoke    # seconds (CI: tests/test_benchmarks_smoke.py)

``prune(model, loss, train digits, sparsity=s)`` -- everything at the package defaults,
``damping="auto"`` included -- against magnitude pruning, for every model of
``benchmarks/model_zoo.py`` (trained and cached there) and the paper's MLPNet when
``../shared/data`` has it. The full zoo table (hindsight oracle, research IHT, the
low-level rule) is ``benchmarks/model_zoo.py``; this script is what a user gets, in a few
minutes. CPU seconds of one thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402
from model_zoo import SMOKE_ZOO, SPARSITIES, ZOO, paper_mlpnet, train  # noqa: E402
from stage_damping import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", action="store_true", help="score on the validation digits")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    part = "val" if args.val else "test"
    _common.print_header(f"prune() at its defaults, one-shot, {part} digits", ["torch"])
    configs = SMOKE_ZOO if args.smoke else ZOO
    zoo = [(name, train(name, cfg), cfg) for name, cfg in configs.items()]
    paper = None if args.smoke else paper_mlpnet()
    if paper is not None:
        zoo.append(("mlpnet-paper", *paper))
    run(zoo[0][1], zoo[0][2], part, sparsity=0.5)  # compile the Numba kernels first
    rows = []
    for name, model, cfg in zoo:
        for sparsity in (0.9,) if args.smoke else SPARSITIES[cfg["data"]]:
            mag, _ = run(model, cfg, part, sparsity=sparsity, method="magnitude")
            acc, cpu = run(model, cfg, part, sparsity=sparsity)
            rows.append([name, sparsity, f"{mag:.1%}", f"{acc:.1%}", f"{cpu:.1f}",
                         f"{100 * (acc - mag):+.1f}"])
            print("  " + " | ".join(map(str, rows[-1])), flush=True)
    print()
    _common.print_table(["model", "sparsity", "magnitude", "prune() defaults", "cpu s",
                         "defaults - magnitude"], rows)


if __name__ == "__main__":
    main()
