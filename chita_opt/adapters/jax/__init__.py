"""JAX adapter: prune the weights of a pytree of parameters with CHITA.

JAX models are pure functions of a pytree of parameters, so this adapter never
touches a model object: it takes ``loss_fn(params, inputs, targets) -> scalar``,
the ``params`` pytree and some data, and returns *new* pytrees (the input is
never modified)::

    from chita_opt.adapters.jax import prune

    new_params, masks, report = prune(loss_fn, params, (x_train, y_train), sparsity=0.9)

For a classifier, also pass ``error_fn=classification_error(apply_fn)`` (``apply_fn(params,
inputs) -> scores``, e.g. a Flax ``model.apply``): the damping choice then ranks candidates
by held-out error first, as the PyTorch adapter does by itself (it sees the model's
outputs; this adapter sees only the loss).

The data flow is the package's usual one: per-example gradients of the selected
leaves become the rows of ``G`` (:func:`gradient_matrix`), the framework-agnostic
:mod:`chita_opt.pruning` loop builds and solves the L0 problems (one-shot,
multi-stage CHITA++, blocks), and the solution is written back into a copy of
the pytree with the same structure, dtypes, shapes and devices.

Importing this module imports ``jax``; ``import chita_opt`` does not.

Selecting leaves
----------------
Leaves are named by their pytree path joined with ``/``: a Flax tree
``{"params": {"Dense_0": {"kernel": ...}}}`` has the leaf
``"params/Dense_0/kernel"``; a list of dicts ``[{"w": ..., "b": ...}, ...]`` has
``"0/w"``, ``"0/b"``, ``"1/w"``... ``select`` is

* ``None`` (default): every floating-point leaf with ``ndim >= 2`` whose name
  does not look like a bias, a scale or an embedding table;
* a list of patterns (or one pattern): shell-style globs matched against the
  whole path with :func:`fnmatch.fnmatchcase` (``"*/kernel"``,
  ``"params/Dense_[01]/kernel"``); a pattern starting with ``"re:"`` is a
  regular expression matched against the whole path with :func:`re.fullmatch`
  (``"re:params/Dense_\\d+/kernel"``). Every pattern must match at least one leaf;
* a callable ``select(path, leaf) -> bool`` receiving the ``/``-joined path.
"""
from ._layout import PytreeLayout, apply_masks, leaf_paths, select_leaves
from ._prune import (
    classification_error,
    gradient_matrix,
    held_out_loss,
    prune,
    select_damping,
)

__all__ = [
    "PytreeLayout",
    "apply_masks",
    "classification_error",
    "gradient_matrix",
    "held_out_loss",
    "leaf_paths",
    "prune",
    "select_damping",
    "select_leaves",
]
