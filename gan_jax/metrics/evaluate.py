"""Deprecated: `python -m gan_jax.metrics.evaluate` is now `python -m gan_jax.evaluate`.

The command runs the same (with a DeprecationWarning) for one release. The metrics
package scores image batches and no longer builds runs or datasets, so the functions
that did moved to the command's module: `evaluate_run`, `evaluate_generator`,
`reference_meta`, `define_flags` and `main` to `gan_jax.evaluate`, and `generated_batches`
is `gan_jax.evaluate.generated_images`; `stats_path` is `gan_jax.metrics.stats_path`.
"""

from __future__ import annotations

import runpy
import warnings

from gan_jax.metrics.scorer import stats_path

__all__ = ["stats_path"]

_MOVED = {
    "evaluate_run": "gan_jax.evaluate.evaluate_run",
    "evaluate_generator": "gan_jax.evaluate.evaluate_generator",
    "reference_meta": "gan_jax.evaluate.reference_meta",
    "define_flags": "gan_jax.evaluate.define_flags",
    "main": "gan_jax.evaluate.main",
    "generated_batches": "gan_jax.evaluate.generated_images",
}


def __getattr__(name: str):
    if name in _MOVED:
        # ImportError rather than AttributeError, so that `from ... import` shows this line.
        raise ImportError(
            f"gan_jax.metrics.evaluate.{name} moved to {_MOVED[name]}: import it from there."
        )
    raise AttributeError(f"module 'gan_jax.metrics.evaluate' has no attribute {name!r}")


if __name__ == "__main__":
    warnings.warn(
        "`python -m gan_jax.metrics.evaluate` is deprecated and will be removed in the next "
        "release: run `python -m gan_jax.evaluate` (the same flags).",
        DeprecationWarning,
        stacklevel=1,
    )
    # By name, so that the metrics package imports nothing above it.
    runpy.run_module("gan_jax.evaluate", run_name="__main__", alter_sys=True)
