"""Deprecated: `gan_jax.rundir` holds these now (and `gan_jax` itself exports them).

Kept for one release so that `from gan_jax.runs import load_run` keeps working,
with a DeprecationWarning.
"""

from __future__ import annotations

import warnings

from gan_jax.rundir import Run, load_config, load_run

__all__ = ["Run", "load_config", "load_run"]

warnings.warn(
    "gan_jax.runs is deprecated and will be removed in the next release: import load_run "
    "and load_config from gan_jax (or gan_jax.rundir).",
    DeprecationWarning,
    stacklevel=2,
)
