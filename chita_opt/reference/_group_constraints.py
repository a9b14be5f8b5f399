"""Group-cap rows of the mixed-integer formulation (to be wired into ``mip.py``).

With binary indicators ``z`` (``z_i = 0`` forces ``w_i = 0``), a group cap is
one linear row per group, ``sum_{i in g} z_i <= N_g``; with the total row
``sum(z) <= k`` the feasible ``z`` are the independent sets of the truncated
partition matroid of DESIGN.md section 9. Kept apart from ``mip.py`` so the
formulation can be reorganised without touching this.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["group_cap_constraints"]


def group_cap_constraints(z: Any, caps: Any) -> list[Any]:
    """``[sum(z[groups == g]) <= cap_g, ...]`` for the groups whose cap can bind.

    Parameters
    ----------
    z : cvxpy Variable of shape (p,), boolean
        The support indicators of the formulation.
    caps : GroupCaps or None
        ``problem.group_caps`` of the :class:`~chita_opt.L0Problem` (caps
        already clipped to the group sizes). None gives no constraints.

    Groups whose cap is at least their size are skipped: the row could never
    bind, and fewer rows keep SCIP's presolve quick.
    """
    if caps is None:
        return []
    import cvxpy as cp  # the MIP path already depends on cvxpy; `import chita_opt` must not

    rows = []
    for g in np.flatnonzero(caps.cap < caps.sizes):
        members = caps.order[caps.starts[g] : caps.starts[g + 1]]
        rows.append(cp.sum(z[members]) <= int(caps.cap[g]))
    return rows
