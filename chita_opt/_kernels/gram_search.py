"""Swap local search and iterated local search on an explicit p x p Gram matrix.

For small problems only (the caller gates on p): with ``G = A^T A + l2 I`` and
``b = A^T y + l2 w_bar - c`` the optimal value on a support S is
``f(S) = f(0) - b_S^T G_SS^{-1} b_S / 2``, and every single swap
(i in S, j not in S) is scored exactly from the k x k inverse ``Hi = G_SS^{-1}``
(see ``chita_opt/solvers/swap.py`` for the formulas) without touching ``A``:
with ``QT = G[:, S] Hi`` (p x k) held and updated by rank-one terms on each
swap (O(p k)), a full scoring of the k (p - k) pairs costs O(k (p - k)).

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
def _init_state(G, S, Hi, RT, QT):  # pragma: no cover - jitted
    """Exact state on S, in place: Hi = G_SS^{-1}, RT = G[:, S] (p x k), QT = RT Hi."""
    p = G.shape[0]
    k = S.shape[0]
    for m in range(p):
        for a in range(k):
            RT[m, a] = G[m, S[a]]
    Hi[:, :] = _inverse(G, S)
    QT[:, :] = RT @ Hi


@njit(cache=True, nogil=True)
def _swap_state(G, S, in_s, Hi, RT, QT, slot, j):  # pragma: no cover - jitted
    """Put j in ``slot``, updating Hi, RT and QT in O(p k). False (nothing done)
    if the swap would make G_SS numerically singular."""
    p = G.shape[0]
    k = S.shape[0]
    q = QT[j, :].copy()
    sigma = G[j, j]
    for a in range(k):
        sigma -= RT[j, a] * q[a]
    d = Hi[slot, slot]
    s_red = sigma + q[slot] ** 2 / d
    if not s_red > 1e-12 * G[j, j]:
        return False
    h = Hi[:, slot].copy()
    q_red = q - h * (q[slot] / d)
    q_red[slot] = 0.0
    u = -q_red
    u[slot] = 1.0
    # QT' = QT - QT[:, slot] h^T / d + (G[:, j] - RT q_red) u^T / s_red
    for m in range(p):
        c1 = QT[m, slot] / d
        t = G[m, j]
        for a in range(k):
            t -= RT[m, a] * q_red[a]
        c2 = t / s_red
        for a in range(k):
            QT[m, a] += -c1 * h[a] + c2 * u[a]
        RT[m, slot] = G[m, j]
    for a in range(k):
        for c in range(k):
            Hi[a, c] += -h[a] * h[c] / d + q_red[a] * q_red[c] / s_red
    for a in range(k):
        Hi[a, slot] = -q_red[a] / s_red
        Hi[slot, a] = -q_red[a] / s_red
    Hi[slot, slot] = 1.0 / s_red
    in_s[S[slot]] = False
    in_s[j] = True
    S[slot] = j
    return True


@njit(cache=True, nogil=True)
def _search(G, b, S, in_s, Hi, RT, QT, max_swaps, tol):  # pragma: no cover - jitted
    """Best-improvement single swaps on a held state (see :func:`local_search`)."""
    p = G.shape[0]
    k = S.shape[0]
    w = _point(Hi, b, S)
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
            # Schur complement and gradient of j against S: O(k)
            sigma = G[j, j]
            g = -b[j]
            for a in range(k):
                sigma -= RT[j, a] * QT[j, a]
                g += RT[j, a] * w[a]
            floor = 1e-12 * G[j, j]
            for i in range(k):
                d = Hi[i, i]
                qi = QT[j, i]
                sp = sigma + qi * qi / d
                if sp <= floor:
                    continue
                gp = g - (w[i] / d) * qi
                delta = 0.5 * w[i] * w[i] / d - 0.5 * gp * gp / sp
                if delta < best:
                    best = delta
                    best_i = i
                    best_j = j
        if best_i < 0:
            break
        if not _swap_state(G, S, in_s, Hi, RT, QT, best_i, best_j):
            break
        n_swaps += 1
        since += 1
        if since >= _REFRESH_EVERY:
            _init_state(G, S, Hi, RT, QT)
            since = 0
        w = _point(Hi, b, S)
    return _value(w, b, S), n_swaps, n_passes


@njit(cache=True, nogil=True)
def local_search(G, b, S, in_s, max_swaps, tol):  # pragma: no cover - jitted
    """Best-improvement single swaps from support ``S`` (int64, modified in place).

    ``in_s`` is the boolean membership mask of S (kept in step). A swap is
    made only if it lowers f by more than ``tol`` (absolute). Every pair
    (i in S, j not in S) is scored exactly in O(1) from the held
    ``QT = G[:, S] G_SS^{-1}`` (p x k), so a full scoring costs O(k (p - k))
    and a swap O(p k + k^2) (rank-one updates; an exact re-inversion every
    32 swaps). Returns ``(value, n_swaps, n_passes)`` with
    ``value = b_S^T G_SS^{-1} b_S`` at the end (f = f(0) - value / 2) and
    ``n_passes`` the full scorings done.
    """
    p = G.shape[0]
    k = S.shape[0]
    Hi = np.empty((k, k))
    RT = np.empty((p, k))
    QT = np.empty((p, k))
    _init_state(G, S, Hi, RT, QT)
    return _search(G, b, S, in_s, Hi, RT, QT, max_swaps, tol)


@njit(cache=True, nogil=True)
def _perturb(G, S, in_s, Hi, RT, QT, max_moves):  # pragma: no cover - jitted
    """Swap 1..max_moves random support entries for random outside ones, in place."""
    p = G.shape[0]
    k = S.shape[0]
    m = min(max_moves, k, p - k)
    s = 1 + np.random.randint(m)  # noqa: NPY002 (Numba's generator, seeded per call)
    for _ in range(s):
        slot = np.random.randint(k)  # noqa: NPY002
        while True:
            j = np.random.randint(p)  # noqa: NPY002
            if not in_s[j]:
                break
        _swap_state(G, S, in_s, Hi, RT, QT, slot, j)


@njit(cache=True, nogil=True)
def iterated_local_search(
    G, b, starts, n_iter, max_moves, max_swaps, tol, max_passes, seed
):  # pragma: no cover - jitted
    """Local search from each row of ``starts`` (m x k), then up to ``n_iter`` rounds
    of perturb-the-best + local search, keeping strict improvements.

    The rounds stop early once ``max_passes`` full pair scorings have been
    done in all (a work budget that does not depend on timing, so runs stay
    reproducible). Returns ``(best_support, best_value, total_swaps,
    rounds_done)``; the best support maximises ``b_S^T G_SS^{-1} b_S`` among
    those visited.
    """
    np.random.seed(seed)  # noqa: NPY002 (Numba's per-thread generator)
    p = G.shape[0]
    k = starts.shape[1]
    best_S = starts[0].copy()
    best_v = -np.inf
    total = 0
    passes = 0
    in_s = np.zeros(p, dtype=np.bool_)
    Hi = np.empty((k, k))
    RT = np.empty((p, k))
    QT = np.empty((p, k))
    for r in range(starts.shape[0]):
        S = starts[r].copy()
        in_s[:] = False
        for a in range(k):
            in_s[S[a]] = True
        _init_state(G, S, Hi, RT, QT)
        v, ns, npass = _search(G, b, S, in_s, Hi, RT, QT, max_swaps, tol)
        total += ns
        passes += npass
        if v > best_v + 2.0 * tol:
            best_v = v
            best_S[:] = S
    # exact state of the best support; each round starts from a copy of it
    best_in = np.zeros(p, dtype=np.bool_)
    for a in range(k):
        best_in[best_S[a]] = True
    best_Hi = np.empty((k, k))
    best_RT = np.empty((p, k))
    best_QT = np.empty((p, k))
    _init_state(G, best_S, best_Hi, best_RT, best_QT)
    S = best_S.copy()
    done = 0
    while done < n_iter and passes < max_passes:
        done += 1
        S[:] = best_S
        in_s[:] = best_in
        Hi[:, :] = best_Hi
        RT[:, :] = best_RT
        QT[:, :] = best_QT
        _perturb(G, S, in_s, Hi, RT, QT, max_moves)
        v, ns, npass = _search(G, b, S, in_s, Hi, RT, QT, max_swaps, tol)
        total += ns
        passes += npass
        if v > best_v + 2.0 * tol:
            best_v = v
            best_S[:] = S
            best_in[:] = in_s
            _init_state(G, best_S, best_Hi, best_RT, best_QT)
    return best_S, best_v, total, done
