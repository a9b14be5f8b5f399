"""Swap local search and iterated local search on an explicit p x p Gram matrix.

For small problems only (the caller gates on p): with ``G = A^T A + l2 I`` and
``b = A^T y + l2 w_bar - c`` the optimal value on a support S is
``f(S) = f(0) - b_S^T G_SS^{-1} b_S / 2``, and every single swap
(i in S, j not in S) is scored exactly from the k x k inverse ``Hi = G_SS^{-1}``
(see ``chita_opt/solvers/swap.py`` for the formulas) in O(k^2 (p - k)) flops,
without touching ``A``.

All functions are pure; random choices come from Numba's generator, seeded
by the caller, so a run is reproducible for a given seed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_REFRESH_EVERY = 32  # swaps between exact re-inversions of G_SS


@njit(cache=True, nogil=True)
def _inverse(G, S):  # pragma: no cover - jitted
    k = S.shape[0]
    H = np.empty((k, k))
    for a in range(k):
        for c in range(k):
            H[a, c] = G[S[a], S[c]]
    return np.linalg.inv(H)


@njit(cache=True, nogil=True)
def _point(Hi, b, S):  # pragma: no cover - jitted
    k = S.shape[0]
    w = np.zeros(k)
    for a in range(k):
        acc = 0.0
        for c in range(k):
            acc += Hi[a, c] * b[S[c]]
        w[a] = acc
    return w


@njit(cache=True, nogil=True)
def _value(w, b, S):  # pragma: no cover - jitted
    # b_S^T G_SS^{-1} b_S = b_S . w_S
    acc = 0.0
    for a in range(S.shape[0]):
        acc += b[S[a]] * w[a]
    return acc


@njit(cache=True, nogil=True)
def _q_sigma(G, Hi, S, j, q, gS):  # pragma: no cover - jitted
    """q = Hi G_Sj and gS = G_Sj (in place); returns the Schur complement G_jj - G_jS q."""
    k = S.shape[0]
    for c in range(k):
        gS[c] = G[j, S[c]]  # G symmetric, C-ordered: row j is contiguous
    for a in range(k):
        acc = 0.0
        for c in range(k):
            acc += Hi[a, c] * gS[c]
        q[a] = acc
    s = G[j, j]
    for a in range(k):
        s -= gS[a] * q[a]
    return s


@njit(cache=True, nogil=True)
def _replace(Hi, slot, q, sigma):  # pragma: no cover - jitted
    """Hi of S with ``slot`` replaced by j, from q = Hi G_Sj and sigma (O(k^2))."""
    k = Hi.shape[0]
    d = Hi[slot, slot]
    h = Hi[:, slot].copy()
    q_red = q - h * (q[slot] / d)
    q_red[slot] = 0.0
    s_red = sigma + q[slot] ** 2 / d
    for a in range(k):
        for c in range(k):
            Hi[a, c] += -h[a] * h[c] / d + q_red[a] * q_red[c] / s_red
    for a in range(k):
        Hi[a, slot] = -q_red[a] / s_red
        Hi[slot, a] = -q_red[a] / s_red
    Hi[slot, slot] = 1.0 / s_red


@njit(cache=True, nogil=True)
def local_search(G, b, S, in_s, max_swaps, tol):  # pragma: no cover - jitted
    """Best-improvement single swaps from support ``S`` (int64, modified in place).

    ``in_s`` is the boolean membership mask of S (kept in step). A swap is
    made only if it lowers f by more than ``tol`` (absolute). Returns
    ``(value, n_swaps, n_passes)`` with ``value = b_S^T G_SS^{-1} b_S`` at the
    end (f = f(0) - value / 2) and ``n_passes`` the pair scorings done (each
    O(k^2 (p - k))).
    """
    p = G.shape[0]
    k = S.shape[0]
    Hi = _inverse(G, S)
    w = _point(Hi, b, S)
    q = np.empty(k)
    gS = np.empty(k)
    n_swaps = 0
    n_passes = 0
    since = 0
    while n_swaps < max_swaps:
        n_passes += 1
        best = -tol
        best_i = -1
        best_j = -1
        for j in range(p):
            if in_s[j]:
                continue
            sigma = _q_sigma(G, Hi, S, j, q, gS)
            g = -b[j]
            for a in range(k):
                g += gS[a] * w[a]
            floor = 1e-12 * G[j, j]
            for i in range(k):
                d = Hi[i, i]
                sp = sigma + q[i] * q[i] / d
                if sp <= floor:
                    continue
                gp = g - (w[i] / d) * q[i]
                delta = 0.5 * w[i] * w[i] / d - 0.5 * gp * gp / sp
                if delta < best:
                    best = delta
                    best_i = i
                    best_j = j
        if best_i < 0:
            break
        sigma = _q_sigma(G, Hi, S, best_j, q, gS)
        in_s[S[best_i]] = False
        in_s[best_j] = True
        S[best_i] = best_j
        n_swaps += 1
        since += 1
        if since >= _REFRESH_EVERY:
            Hi = _inverse(G, S)
            since = 0
        else:
            _replace(Hi, best_i, q, sigma)
        w = _point(Hi, b, S)
    return _value(w, b, S), n_swaps, n_passes


@njit(cache=True, nogil=True)
def _perturb(S, in_s, p, max_moves):  # pragma: no cover - jitted
    """Swap 1..max_moves random support entries for random outside ones, in place."""
    k = S.shape[0]
    m = min(max_moves, k, p - k)
    s = 1 + np.random.randint(m)
    for _ in range(s):
        slot = np.random.randint(k)
        while True:
            j = np.random.randint(p)
            if not in_s[j]:
                break
        in_s[S[slot]] = False
        in_s[j] = True
        S[slot] = j


@njit(cache=True, nogil=True)
def iterated_local_search(G, b, starts, n_iter, max_moves, max_swaps, tol, max_passes,
                          seed):  # pragma: no cover - jitted
    """Local search from each row of ``starts`` (m x k), then up to ``n_iter`` rounds
    of perturb-the-best + local search, keeping strict improvements.

    The rounds stop early once ``max_passes`` pair scorings have been done in
    all (a work budget that does not depend on timing, so runs stay
    reproducible). Returns ``(best_support, best_value, total_swaps,
    rounds_done)``; the best support maximises ``b_S^T G_SS^{-1} b_S`` among
    those visited.
    """
    np.random.seed(seed)
    p = G.shape[0]
    k = starts.shape[1]
    best_S = starts[0].copy()
    best_v = -np.inf
    total = 0
    passes = 0
    in_s = np.zeros(p, dtype=np.bool_)
    for r in range(starts.shape[0]):
        S = starts[r].copy()
        in_s[:] = False
        for a in range(k):
            in_s[S[a]] = True
        v, ns, npass = local_search(G, b, S, in_s, max_swaps, tol)
        total += ns
        passes += npass
        if v > best_v + 2.0 * tol:
            best_v = v
            best_S[:] = S
    done = 0
    while done < n_iter and passes < max_passes:
        done += 1
        S = best_S.copy()
        in_s[:] = False
        for a in range(k):
            in_s[S[a]] = True
        _perturb(S, in_s, p, max_moves)
        v, ns, npass = local_search(G, b, S, in_s, max_swaps, tol)
        total += ns
        passes += npass
        if v > best_v + 2.0 * tol:
            best_v = v
            best_S[:] = S
    return best_S, best_v, total, done
