"""Warnings that point at the caller's code, however deep inside the package they arise.

A pruning warning is raised several calls below the user's ``prune(...)``
(adapter -> pipeline -> stage loop), and the depth differs between entry
points (``chita_opt.adapters.torch.prune``, ``chita_opt.adapters.jax.prune``,
``chita_opt.pruning.multistage_prune``). A fixed ``stacklevel`` then names a
line of the package; :func:`warn` names the first frame outside it instead.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first calling frame outside ``chita_opt``."""
    level = 2  # 1 is this function, 2 its caller
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
