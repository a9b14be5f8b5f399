"""PyTorch adapter: per-sample gradients, one-shot / multi-stage / gradual CHITA pruning.

    from chita_opt.adapters.torch import prune, make_permanent

    report = prune(model, torch.nn.functional.cross_entropy, loader, sparsity=0.9)
    print(report)               # sparsity per layer, objective per stage, timings
    make_permanent(model)       # drop the masks once fine-tuning is over

What happens:

1. The pruned tensors are selected (by default the ``weight`` of every
   ``nn.Linear`` and ``nn.Conv1d/2d/3d``; ``select=`` takes names or a
   predicate) and flattened into one vector ``w`` (:class:`ParamLayout`).
2. The framework-neutral pipeline (:mod:`chita_opt.pruning.pipeline`) draws
   the samples, sets a held-out share aside to choose the damping, and runs
   the stages. At each stage per-sample (or per-mini-batch) gradients of
   ``loss_fn(model(inputs), targets)`` are computed here with ``torch.func``
   (``vmap`` over ``grad`` of a ``functional_call``) in eval mode, for the
   still-alive weights only, into one reused float32 buffer; the model
   itself is not modified while this happens.
3. The pruned weights are written back in place and the masks are recorded
   with :mod:`torch.nn.utils.prune` (``weight_orig`` + ``weight_mask`` + a
   forward pre-hook), so fine-tuning keeps the zeros at zero;
   :func:`make_permanent` removes the masks afterwards.

If anything fails, the model is left exactly as it was (weights, masks,
hooks, training mode, ``requires_grad``) and the exception propagates with a
note saying where it happened.

Importing this module imports torch; ``import chita_opt`` does not.
"""
from ._gradual import gradual_prune
from ._layerwise import prune_layerwise
from ._prune import gradient_matrix, held_out_loss, prune, select_damping
from ._select import DEFAULT_PRUNABLE, selected_params
from ._semi_structured import to_semi_structured
from ._state import apply_masks, make_permanent, masks

__all__ = [
    "DEFAULT_PRUNABLE",
    "apply_masks",
    "gradient_matrix",
    "gradual_prune",
    "held_out_loss",
    "make_permanent",
    "masks",
    "prune",
    "prune_layerwise",
    "select_damping",
    "selected_params",
    "to_semi_structured",
]
