"""Framework adapters: :mod:`chita_opt.adapters.torch` and :mod:`chita_opt.adapters.jax`.

Import the one you need explicitly (``from chita_opt.adapters.torch import prune``);
this package itself imports no framework, so ``import chita_opt`` stays light.
"""
