"""Spectral normalisation (Miyato et al. 2018): a weight divided by its largest singular value.

A weight of shape (..., O) is viewed as the matrix W = w.reshape(-1, O) of shape
(K, O). Its largest singular value sigma is estimated by power iteration, one
iteration per training step, continued from the previous step's vectors:

    v = normalise(W u),   u = normalise(W^T v),   sigma = v^T W u,

and the layer uses W / sigma. The gradient flows through sigma with u and v held
constant, as in the paper. The vectors `sn_u` (O,), `sn_v` (K,) and the estimate
`sn_sigma` live in the `batch_stats` collection of the layer that owns the weight,
next to BatchNorm statistics: they are saved and restored with the train state,
and since they are computed from the replicated weights alone, every device of a
data-parallel run computes the same values without any communication.

`train_step` runs the iteration once per step, in the discriminator's first
forward pass (on real images); its other passes of the step (fake images,
gradient penalties, the generator's update) reuse the stored vectors with the
current weights.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_EPS = 1e-12
_HIGHEST = jax.lax.Precision.HIGHEST  # No TF32/bf16 passes on GPUs and TPUs.


def l2_normalize(x: jax.Array, eps: float = _EPS) -> jax.Array:
    """x / ||x|| (x / sqrt(eps) for x = 0)."""
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x)) + eps)


def power_iteration(w_KxO: jax.Array, u_O: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One power-iteration step for the largest singular value of `w_KxO`.

    Returns the new right vector u (O,), the left vector v (K,) and the estimate
    sigma = v^T W u, which increases towards the largest singular value.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.diag(jnp.array([3.0, 1.0]))
      >>> u, v, sigma = power_iteration(w, jnp.array([0.6, 0.8]))
      >>> round(float(sigma), 3)
      2.771
    """
    v = l2_normalize(jnp.dot(w_KxO, u_O, precision=_HIGHEST))
    u = l2_normalize(jnp.dot(v, w_KxO, precision=_HIGHEST))
    return u, v, jnp.dot(v, jnp.dot(w_KxO, u, precision=_HIGHEST), precision=_HIGHEST)


def normalize(module: nn.Module, w: jax.Array, update: bool) -> jax.Array:
    """`w / sigma(w)`, with the power-iteration state kept in `module`'s `batch_stats`.

    Call it from the compact method of the module that owns `w`. At
    initialisation the state starts from a random u (from the `params` RNG) and
    one iteration. With `update` (and `batch_stats` mutable) one iteration runs
    from the stored u and its result is stored; otherwise the stored u and v are
    used as they are. Computed in float32; the result has `w`'s dtype.
    """
    w_KxO = w.reshape(-1, w.shape[-1]).astype(jnp.float32)
    first = None
    if not module.has_variable("batch_stats", "sn_u"):
        u0 = jax.random.normal(module.make_rng("params"), (w_KxO.shape[1],), jnp.float32)
        first = power_iteration(jax.lax.stop_gradient(w_KxO), l2_normalize(u0))
    u_var = module.variable("batch_stats", "sn_u", lambda: first[0])
    v_var = module.variable("batch_stats", "sn_v", lambda: first[1])
    sigma_var = module.variable("batch_stats", "sn_sigma", lambda: first[2])
    u, v = u_var.value, v_var.value
    store = update and module.is_mutable_collection("batch_stats")
    if update:
        u, v, _ = power_iteration(jax.lax.stop_gradient(w_KxO), u)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    sigma = jnp.dot(v, jnp.dot(w_KxO, u, precision=_HIGHEST), precision=_HIGHEST)
    if store:
        u_var.value, v_var.value = u, v
        sigma_var.value = jax.lax.stop_gradient(sigma)
    return (w.astype(jnp.float32) / sigma).astype(w.dtype)
