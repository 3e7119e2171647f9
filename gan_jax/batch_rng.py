"""Per-example random draws that do not depend on how the batch is split over devices.

Under `pmap`/`shard_map` each device holds a slice of the global batch. If each
drew its examples' noise, augmentation or interpolation weights from the step's
key with its local batch size, every device would draw the same values, and the
result would change with the number of devices. `per_example` instead draws the
values of the whole global batch on every device (with the same key) and keeps
the device's own slice, so example i gets the same values on 1 or N devices.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

Sampler = Callable[[jax.Array, int], jax.Array]


def per_example(
    sample: Sampler, rng: jax.Array, batch_size: int, axis_name: str | None = None
) -> jax.Array:
    """`sample(rng, m)` (m values along the first axis) for this device's `batch_size` examples.

    Without `axis_name`, just `sample(rng, batch_size)`. With it, `sample(rng, n *
    batch_size)` over the n devices of the axis, sliced at this device's position.

    Example:
      >>> import jax
      >>> per_example(lambda k, m: jax.random.uniform(k, (m,)), jax.random.key(0), 3).shape
      (3,)
    """
    if axis_name is None:
        return sample(rng, batch_size)
    devices = jax.lax.psum(1, axis_name)
    values = sample(rng, devices * batch_size)
    start = jax.lax.axis_index(axis_name) * batch_size
    return jax.lax.dynamic_slice_in_dim(values, start, batch_size)
