"""Deprecated: `gan_jax.rundir` holds these now (and `gan_jax` itself exports them).

Kept for one release so that `from gan_jax.api import save_checkpoint` keeps working,
with a DeprecationWarning.
"""

from __future__ import annotations

import warnings

from gan_jax.rundir import read_metrics, restore_checkpoint, save_checkpoint

__all__ = ["read_metrics", "restore_checkpoint", "save_checkpoint"]

warnings.warn(
    "gan_jax.api is deprecated and will be removed in the next release: import "
    "save_checkpoint, restore_checkpoint and read_metrics from gan_jax (or gan_jax.rundir).",
    DeprecationWarning,
    stacklevel=2,
)
