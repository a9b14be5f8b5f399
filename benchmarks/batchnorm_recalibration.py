"""BatchNorm statistics re-estimated after pruning, on the model zoo's BN CNNs.

    python benchmarks/batchnorm_recalibration.py

``prune`` at its defaults with ``recalibrate_bn=False`` and ``True`` (the
default), against magnitude pruning; test accuracy on the zoo's test digits
(models trained and cached by ``benchmarks/model_zoo.py``). One thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import copy  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo import ZOO, dataset, train  # noqa: E402

from chita_opt.adapters.torch import prune  # noqa: E402


def accuracy(m: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    m.eval()
    with torch.no_grad():
        return float((m(X).argmax(1) == y).float().mean())


MODELS = {"mnist14-cnn-bn-adam": (0.8, 0.9, 0.95), "digits-cnn-bn-adam": (0.5, 0.8, 0.9)}


def main() -> None:
    torch.set_num_threads(1)
    print("| model | sparsity | stale BN statistics | re-estimated (default) | magnitude |")
    print("|---|---|---|---|---|")
    for name, sparsities in MODELS.items():
        cfg = ZOO[name]
        model = train(name, cfg)
        split = dataset(cfg["data"])
        data = split.part("train")
        X_test, y_test = split.part("test")

        for s in sparsities:
            cells = []
            for kwargs in (dict(recalibrate_bn=False), dict(), dict(method="magnitude")):
                m = copy.deepcopy(model)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    prune(m, F.cross_entropy, data, sparsity=s, progress=False, **kwargs)
                cells.append(f"{accuracy(m, X_test, y_test):.1%}")
            print(f"| {name} | {s} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
