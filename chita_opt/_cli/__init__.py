"""Subcommands of the ``chita-opt`` command (one module each, imported lazily)."""
