"""The dense linear-algebra primitives of the layer solver, behind one seam.

The algorithms (:mod:`._refit`, :mod:`._swaps`, :mod:`.solve`) gather blocks
and score moves in numpy and call the few primitives below for the
expensive, batched part: Cholesky solves and inverses of stacks of SPD blocks,
the dense inverse of ``Hd`` and the batched products of the exact exchange
scoring. :func:`linalg_for` picks the implementation:

* ``None`` — :class:`NumpyLinalg`, LAPACK through scipy, one Cholesky per row
  (the code the solver always ran, unchanged);
* a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``) —
  :class:`TorchLinalg`, the same primitives as batched ``torch.linalg`` calls
  in float64 on that device; inputs and outputs stay numpy, so every caller is
  the same code for both.

torch is imported only when a device is asked for: the core never needs it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs, dtrtrs

from .._validation import describe

__all__ = ["NumpyLinalg", "TorchLinalg", "linalg_for"]

# bound on the (rows, |D|, d_in) gather of the batched pruned-set refit
_CHUNK_BYTES = 64 * 2**20


class NumpyLinalg:
    """LAPACK one block at a time: microseconds of loop per row, potrf/potrs flops."""

    name = "numpy"

    @staticmethod
    def spd_inverse(Hss: np.ndarray) -> np.ndarray:
        """Inverses of a stack of SPD blocks (Cholesky + potri: a third of the flops of LU)."""
        inv = np.empty_like(Hss)
        for b in range(Hss.shape[0]):
            c, info = dpotrf(Hss[b], lower=False, clean=True)
            if info == 0:
                m, info = dpotri(c, lower=False)
            if info != 0:  # not positive definite (damping 0, N < d_in): minimum-norm inverse
                inv[b] = np.linalg.pinv(Hss[b], hermitian=True)
                continue
            # potri fills the upper triangle; the lower one is zero (clean=True)
            np.add(m, m.T, out=inv[b])
            inv[b].flat[:: m.shape[0] + 1] *= 0.5
        return inv

    @staticmethod
    def spd_solve(Hss: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """``Hss[b]^{-1} rhs[b]`` for each block (minimum-norm where not positive definite)."""
        # one LAPACK Cholesky per row: the loop costs microseconds per row, the
        # batched LU of np.linalg three times the flops of potrf/potrs
        out = np.empty_like(rhs)
        for b in range(Hss.shape[0]):
            c, info = dpotrf(Hss[b], lower=False, clean=False)
            if info == 0:
                out[b] = dpotrs(c, rhs[b], lower=False)[0]
            else:
                out[b] = np.linalg.pinv(Hss[b], hermitian=True) @ rhs[b]
        return out

    @staticmethod
    def pruned_solve(Hdd, wd, Hix, idx, want_quad):
        """For each block b with ``Hdd[b] = c^T c`` and ``B = Hix[idx[b]]``:
        ``y = Hdd[b]^{-1} wd[b]``; returns ``(y @ B, ||c^{-T} B||^2 by column)``
        (the second None unless ``want_quad``). Raises LinAlgError if a block is
        not positive definite (the caller then takes another route).
        """
        n = idx.shape[0]
        Y = np.empty((n, Hix.shape[1]))
        quad = np.empty((n, Hix.shape[1])) if want_quad else None
        for b in range(n):
            c, info = dpotrf(Hdd[b], lower=False, clean=True)
            if info != 0:
                raise np.linalg.LinAlgError("Hinv_DD is not positive definite")
            B = Hix[idx[b]]  # (|D|, d_in): rows Hinv_{D,:}, zero on padding
            Y[b] = dpotrs(c, wd[b], lower=False)[0] @ B
            if want_quad:
                Z = dtrtrs(c, B, lower=False, trans=1)[0]  # c^T Z = B
                quad[b] = np.einsum("ij,ij->j", Z, Z)
        return Y, quad

    @staticmethod
    def inverse(Hd: np.ndarray) -> np.ndarray:
        """``Hd^{-1}`` by Cholesky (pseudo-inverse when Hd is singular)."""
        try:
            L = np.linalg.cholesky(Hd)
            Linv = np.linalg.solve(L, np.eye(Hd.shape[0]))
            return Linv.T @ Linv
        except np.linalg.LinAlgError:
            return np.linalg.pinv(Hd, hermitian=True)

    @staticmethod
    def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return A @ B


class TorchLinalg:
    """The same primitives as batched ``torch.linalg`` calls in float64 on ``device``.

    One batched call per chunk instead of a Python loop per row; results agree
    with :class:`NumpyLinalg` to rounding (allclose), not bit for bit.
    """

    def __init__(self, torch_mod, device) -> None:
        self.torch = torch_mod
        self.device = device
        self.name = f"torch:{device}"

    def _t(self, a: np.ndarray):
        return self.torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64), device=self.device)

    @staticmethod
    def _np(t) -> np.ndarray:
        return t.cpu().numpy()

    def _pinv_where(self, out, A, bad, rhs=None):
        # blocks whose Cholesky failed: minimum-norm inverse, as the numpy path does
        if bool(bad.any()):
            P = self.torch.linalg.pinv(A[bad], hermitian=True)
            out[bad] = P if rhs is None else (P @ rhs[bad][..., None])[..., 0]
        return out

    def spd_inverse(self, Hss: np.ndarray) -> np.ndarray:
        A = self._t(Hss)
        L, info = self.torch.linalg.cholesky_ex(A)
        inv = self.torch.cholesky_inverse(L)
        return self._np(self._pinv_where(inv, A, info != 0))

    def spd_solve(self, Hss: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        A, r = self._t(Hss), self._t(rhs)
        L, info = self.torch.linalg.cholesky_ex(A)
        out = self.torch.cholesky_solve(r[..., None], L)[..., 0]
        return self._np(self._pinv_where(out, A, info != 0, r))

    def pruned_solve(self, Hdd, wd, Hix, idx, want_quad):
        torch = self.torch
        n, s = idx.shape
        d_in = Hix.shape[1]
        L, info = torch.linalg.cholesky_ex(self._t(Hdd))
        if bool((info != 0).any()):
            raise np.linalg.LinAlgError("Hinv_DD is not positive definite")
        y = torch.cholesky_solve(self._t(wd)[..., None], L)  # (n, s, 1)
        Hx, ix = self._t(Hix), torch.as_tensor(idx, device=self.device)
        Y = torch.empty((n, d_in), dtype=torch.float64, device=self.device)
        quad = torch.empty_like(Y) if want_quad else None
        # the gathered B is (rows, |D|, d_in): a few rows at a time
        step = max(1, _CHUNK_BYTES // (8 * s * d_in * (2 if want_quad else 1)))
        for a in range(0, n, step):
            sl = slice(a, min(n, a + step))
            B = Hx[ix[sl]]  # rows Hinv_{D,:}, zero on padding
            Y[sl] = (y[sl].transpose(1, 2) @ B)[:, 0]
            if want_quad:
                # L L^T = Hdd, so L = c^T of the numpy path: L Z = B
                Z = torch.linalg.solve_triangular(L[sl], B, upper=False)
                quad[sl] = (Z * Z).sum(dim=1)
        return self._np(Y), None if quad is None else self._np(quad)

    def inverse(self, Hd: np.ndarray) -> np.ndarray:
        A = self._t(Hd)
        L, info = self.torch.linalg.cholesky_ex(A)
        if int(info) != 0:
            return self._np(self.torch.linalg.pinv(A, hermitian=True))
        return self._np(self.torch.cholesky_inverse(L))

    def matmul(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return self._np(self._t(A) @ self._t(B))


_NUMPY = NumpyLinalg()


def linalg_for(device: Any) -> NumpyLinalg | TorchLinalg:
    """The primitives for ``device``: None -> numpy/LAPACK, else torch on that device."""
    if device is None:
        return _NUMPY
    torch_mod = sys.modules.get("torch")
    is_torch_device = torch_mod is not None and isinstance(device, torch_mod.device)
    if not (isinstance(device, str) or is_torch_device):
        raise ValueError("device: expected None (numpy) or a torch device such as 'cpu' or "
                         f"'cuda', got {describe(device)}")
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"device: {device!r} runs the layer solver with PyTorch, which is "
                          "not installed; expected device=None (numpy) without it") from exc
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError("device: expected None (numpy) or a torch device such as 'cpu' or "
                         f"'cuda', got {describe(device)}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected None, 'cpu' or 'cuda[:N]', got {describe(device)}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: expected a device this machine has, got {str(dev)!r} "
                             "but torch.cuda.is_available() is False; use device=None "
                             "(numpy) or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: expected cuda:0 to cuda:{torch.cuda.device_count() - 1}, "
                             f"got {str(dev)!r}")
    return TorchLinalg(torch, dev)
