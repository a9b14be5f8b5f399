"""Hypothesis profiles.

The default profile is derandomized: every run draws the same examples, so a
green main stays green and a failure reproduces on any machine. To explore
new examples (and find new bugs), run

    HYPOTHESIS_PROFILE=explore python -m pytest

and turn any failure it finds into a fixed regression test.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
