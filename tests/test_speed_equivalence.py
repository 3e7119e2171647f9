"""The fast formulations compute the same functions as the straightforward ones.

`conv_impl="dot"` (channels-major activations, convolutions as matrix products)
must match `conv_impl="lax"` (XLA convolutions): same parameters, same outputs,
same gradients, same training step, in float32 up to rounding. bfloat16 must
stay close to float32 and keep parameters and BatchNorm statistics in float32.
"""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax
from gan_jax import conv, layers, models, parallel


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _assert_trees_close(a, b, rtol: float) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for path, x, y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(a), jax.tree.leaves(b), strict=True
    ):
        assert x.shape == y.shape, path[0]
        assert _rel(x, y) <= rtol, (jax.tree_util.keystr(path[0]), _rel(x, y))


@functools.cache
def _initial_states(config_json: str):
    config = gan_jax.default_config()
    config.update(json.loads(config_json))
    return gan_jax.create_train_states(config, jax.random.key(0))


def _states(config, impl: str):
    """The states of `config` with `impl` convolutions, each config initialised once
    (the batch size and steps per dispatch do not enter the states)."""
    fields = config.to_dict()
    del fields["batch_size"], fields["steps_per_dispatch"]
    g, d = _initial_states(json.dumps(fields, sort_keys=True))
    return g.replace(model=g.model.clone(conv_impl=impl)), d.replace(
        model=d.model.clone(conv_impl=impl)
    )


# ---------------------------------------------------------------- single layers


@pytest.mark.parametrize("c,o,size", [(3, 8, 8), (5, 4, 4), (8, 16, 16)])
def test_conv_dot_equals_lax_convolution(c, o, size):
    x = jax.random.normal(jax.random.key(0), (3, size, size, c))
    k = jax.random.normal(jax.random.key(1), (4, 4, c, o))
    ref = jax.lax.conv_general_dilated(
        x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    out = conv.from_channels_major(conv.conv_dot(conv.to_channels_major(x), k))
    assert _rel(out, ref) < 1e-5


@pytest.mark.parametrize("c,o,size", [(6, 3, 2), (4, 8, 4), (16, 5, 8)])
def test_conv_transpose_dot_equals_flax_conv_transpose(c, o, size):
    x = jax.random.normal(jax.random.key(0), (3, size, size, c))
    layer = layers.UpsampleConvTranspose(o)
    params = layer.init(jax.random.key(1), x)
    ref = layer.apply(params, x)
    k = params["params"]["conv"]["kernel"]
    out = conv.from_channels_major(conv.conv_transpose_dot(conv.to_channels_major(x), k))
    assert out.shape == (3, 2 * size, 2 * size, o)
    assert _rel(out, ref) < 1e-5


def test_project_dot_equals_flax_valid_conv_transpose():
    z = jax.random.normal(jax.random.key(0), (5, 7))
    layer = nn.ConvTranspose(6, (4, 4), padding="VALID", use_bias=False)
    params = layer.init(jax.random.key(1), z[:, None, None, :])
    ref = layer.apply(params, z[:, None, None, :])
    out = conv.from_channels_major(conv.project_dot(z, params["params"]["kernel"]))
    assert _rel(out, ref) < 1e-5


@pytest.mark.parametrize(
    "fn,shape",
    [(conv.patches, (3, 8, 8, 2)), (conv.overlap_add, (4, 4, 3, 4, 4, 2))],
)
def test_hand_written_adjoints_are_the_transposes(fn, shape):
    # <f(x), t> == <x, f^T(t)>, with f^T the custom backward pass.
    x = jax.random.normal(jax.random.key(0), shape)
    y, vjp = jax.vjp(fn, x)
    t = jax.random.normal(jax.random.key(1), y.shape)
    (xt,) = vjp(t)
    lhs, rhs = float(jnp.vdot(y, t)), float(jnp.vdot(x, xt))
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs)
    # And they equal what autodiff of the plain formulation gives.
    (auto,) = jax.vjp(fn.fun, x)[1](t)
    assert _rel(xt, auto) < 1e-6


@pytest.mark.parametrize("p,q", [(3, 5), (6, 2)])
def test_matmul_gradients(p, q):
    w = jax.random.normal(jax.random.key(0), (p, q))
    x = jax.random.normal(jax.random.key(1), (q, 4, 3))
    r = jax.random.normal(jax.random.key(2), (p, 4, 3))

    def loss(mm, w, x):
        return jnp.sum(jnp.sin(mm(w, x)) * r)

    def plain(w, x):
        return jnp.einsum("pq,q...->p...", w, x)

    got = jax.grad(lambda w, x: loss(conv.matmul, w, x), argnums=(0, 1))(w, x)
    want = jax.grad(lambda w, x: loss(plain, w, x), argnums=(0, 1))(w, x)
    for a, b in zip(got, want, strict=True):
        assert _rel(a, b) < 1e-5


def test_bfloat16_moves_as_words_exactly():
    # Odd batch sizes cannot pack two bf16 values per word and take the plain path.
    for n in (4, 3):
        x = jax.random.normal(jax.random.key(0), (3, 8, 8, n)).astype(jnp.bfloat16)
        assert jnp.array_equal(conv.patches(x), conv.patches.fun(x))
        planes = jax.random.normal(jax.random.key(1), (4, 2, 3, 3, n)).astype(jnp.bfloat16)
        want = planes.reshape(2, 2, 2, 3, 3, n).transpose(2, 3, 0, 4, 1, 5).reshape(2, 6, 6, n)
        assert jnp.array_equal(conv.interleave(planes), want)


# ---------------------------------------------------------------- whole models


def test_dot_and_lax_share_parameters_exactly():
    z = jnp.zeros((2, 16))
    x = jnp.zeros((2, 32, 32, 3))
    for module, key, inputs in ((models.Generator, 0, z), (models.Discriminator, 1, x)):
        # Jitted: one compilation each instead of one per operation.
        a = jax.jit(module(width=8, conv_impl="dot").init)(jax.random.key(key), inputs)
        b = jax.jit(module(width=8, conv_impl="lax").init)(jax.random.key(key), inputs)
        assert jax.tree.structure(a) == jax.tree.structure(b)
        leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        assert all(jnp.array_equal(u, v) for u, v in leaves)
    # The default sizes keep the PyTorch DCGAN's parameter counts.
    shapes = jax.eval_shape(
        lambda: models.Generator(conv_impl="dot").init(jax.random.key(0), jnp.zeros((1, 100)))
    )
    assert gan_jax.count_params(shapes["params"]) == 1_068_928
    shapes = jax.eval_shape(
        lambda: models.Discriminator(conv_impl="dot").init(jax.random.key(0), x[:1])
    )
    assert gan_jax.count_params(shapes["params"]) == 663_296


def test_default_resolves_to_dot_on_cpu():
    assert models.Generator().conv_impl == "auto"
    assert conv.resolve_conv_impl("auto") == ("dot" if jax.default_backend() == "cpu" else "lax")
    with pytest.raises(ValueError, match="conv_impl"):
        conv.resolve_conv_impl("fast")


@pytest.mark.parametrize("size,channels,width", [(32, 3, 8), (16, 1, 4)])
def test_models_forward_and_backward_match(size, channels, width):
    z = jax.random.normal(jax.random.key(0), (4, 16))
    x = jax.random.uniform(jax.random.key(1), (4, size, size, channels), minval=-1, maxval=1)
    results = {}
    for impl in ("lax", "dot"):
        g = models.Generator(size, channels, width, conv_impl=impl)
        d = models.Discriminator(size, channels, width, conv_impl=impl)
        g_vars = jax.jit(g.init)(jax.random.key(2), z)
        d_vars = jax.jit(d.init)(jax.random.key(3), x)

        def loss(g_params, d_params, x, g=g, d=d, g_vars=g_vars, d_vars=d_vars):
            fake, g_new = g.apply(
                {"params": g_params, "batch_stats": g_vars["batch_stats"]},
                z,
                mutable=["batch_stats"],
            )
            both = jnp.concatenate([fake, x])
            logits, d_new = d.apply(
                {"params": d_params, "batch_stats": d_vars["batch_stats"]},
                both,
                mutable=["batch_stats"],
            )
            return jnp.sum(jnp.sin(3.0 * logits)), (logits, g_new, d_new)

        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))
        results[impl] = grads(g_vars["params"], d_vars["params"], x)
    _assert_trees_close(results["dot"], results["lax"], 1e-4)


# ---------------------------------------------------------------- training step


def _small_config():
    config = gan_jax.default_config()
    config.g_width = config.d_width = 16
    return config


def _images(n: int = 16) -> jax.Array:
    return jax.random.uniform(jax.random.key(5), (n, 32, 32, 3), minval=-1, maxval=1)


_step = jax.jit(gan_jax.train_step)


@functools.cache
def _lax_float32_step():
    """One float32 step with XLA convolutions: the reference of three tests, run once."""
    return _step(*_states(_small_config(), "lax"), _images(), jax.random.key(6))


def test_train_step_dot_equals_lax_float32():
    config = _small_config()
    out, params = {}, {}
    for impl in ("lax", "dot"):
        if impl == "lax":
            g, d, metrics = _lax_float32_step()
        else:
            g, d, metrics = _step(*_states(config, impl), _images(), jax.random.key(6))
        # Gradients (Adam's moments), BatchNorm statistics and metrics agree to rounding.
        out[impl] = (g.opt_state, d.opt_state, g.batch_stats, d.batch_stats, metrics)
        params[impl] = (g.params, d.params)
    _assert_trees_close(out["dot"], out["lax"], 1e-4)
    # Adam's first step is ~lr * sign(gradient), so a gradient that rounds across zero
    # moves its parameter by up to 2 lr the other way; all others agree to rounding.
    lr = config.g_learning_rate
    for a, b in zip(jax.tree.leaves(params["dot"]), jax.tree.leaves(params["lax"]), strict=True):
        diff = np.abs(np.asarray(a) - np.asarray(b))
        assert diff.max() <= 2.01 * lr
        assert np.mean(diff > 1e-3 * lr) < 1e-3


def test_bfloat16_step_is_close_to_float32_and_keeps_float32_state():
    config = _small_config()
    g0, _ = _states(config, "lax")
    ref_g, _, ref_m = _lax_float32_step()
    config.dtype = "bfloat16"
    g, d = _states(config, "dot")
    step = _step
    g, d, m = step(g, d, _images(), jax.random.key(6))
    for tree in (g.params, g.batch_stats, d.params, d.batch_stats, g.opt_state, d.opt_state):
        assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(tree))
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert abs(float(m[name]) - float(ref_m[name])) < 2e-2 * abs(float(ref_m[name])), name
    # bf16 moves every parameter tensor in the direction float32 does.
    for a, b, p0 in zip(
        jax.tree.leaves(g.params),
        jax.tree.leaves(ref_g.params),
        jax.tree.leaves(g0.params),
        strict=True,
    ):
        da, db = np.asarray(a - p0).ravel(), np.asarray(b - p0).ravel()
        # Adam's first step is ~lr * sign(g): entries with near-zero gradients may flip
        # sign under bf16 rounding, which only a tensor of many entries averages out.
        bound = 0.9 if da.size >= 1000 else 0.5
        assert np.dot(da, db) / (np.linalg.norm(da) * np.linalg.norm(db)) > bound
    for i in range(3):  # It trains: the losses stay finite.
        g, d, m = step(g, d, _images(), jax.random.key(7 + i))
    assert all(np.isfinite(float(v)) for v in m.values())


def test_dot_runs_under_the_trainers_sharded_compilation():
    # The trainer jits over a ("data",) mesh with explicit shardings: the batch axis
    # must never be merged with others in a reshape.
    config = _small_config()
    config.batch_size = 8
    config.steps_per_dispatch = 2
    for dtype in ("float32", "bfloat16"):
        config.dtype = dtype
        par = parallel.Parallel(config)
        g, d = par.put_states(*_states(config, "dot"))
        images = jax.random.uniform(jax.random.key(1), (2, 8, 32, 32, 3), minval=-1, maxval=1)
        g, d, metrics = par.compile()(
            g, d, jax.device_put(images, par.batch_sharding), par.put_states(jax.random.key(2))
        )
        assert metrics["d_loss"].shape == (2,)
        assert np.all(np.isfinite(np.asarray(metrics["g_loss"])))


# ---------------------------------------------------------------- sub-pixel upsampling


@pytest.mark.parametrize("c,o,size", [(6, 3, 2), (4, 8, 4), (16, 5, 8)])
def test_subpixel_equals_transposed_convolution(c, o, size):
    x = jax.random.normal(jax.random.key(0), (3, size, size, c))
    params = jax.jit(layers.UpsampleConvTranspose(o).init)(jax.random.key(1), x)
    ref = jax.jit(layers.UpsampleConvTranspose(o).apply)(params, x)
    out = jax.jit(layers.UpsampleSubpixel(o).apply)(params, x)  # Same parameter layout.
    assert out.shape == ref.shape == (3, 2 * size, 2 * size, o)
    assert _rel(out, ref) < 1e-5
    grads = [
        jax.jit(jax.grad(lambda p, m=m: jnp.sum(jnp.sin(m.apply(p, x)))))(params)
        for m in (layers.UpsampleConvTranspose(o), layers.UpsampleSubpixel(o))
    ]
    _assert_trees_close(grads[1], grads[0], 1e-5)


def test_train_step_subpixel_equals_transposed_convolution():
    config = _small_config()
    out = {}
    for subpixel in (False, True):
        config.subpixel = subpixel
        if subpixel:
            g, d, metrics = _step(*_states(config, "lax"), _images(), jax.random.key(6))
        else:
            g, d, metrics = _lax_float32_step()
        out[subpixel] = (g.opt_state, d.opt_state, g.batch_stats, d.batch_stats, metrics)
    _assert_trees_close(out[True], out[False], 1e-4)


# ---------------------------------------------------------------- several steps per dispatch


def test_steps_per_dispatch_equals_single_steps():
    config = _small_config()
    config.batch_size = 8
    images = jax.random.uniform(jax.random.key(1), (4, 8, 32, 32, 3), minval=-1, maxval=1)
    final = {}
    for k in (1, 2, 4):
        config.steps_per_dispatch = k
        par = parallel.Parallel(config)
        g, d = par.put_states(*_states(config, "auto"))
        key, fn = par.put_states(jax.random.key(2)), par.compile()
        losses = []
        for i in range(0, 4, k):
            g, d, m = fn(g, d, jax.device_put(images[i : i + k], par.batch_sharding), key)
            losses.extend(np.asarray(m["d_loss"]).tolist())
        g, d = par.get_states(g, d)
        final[k] = (
            (g.params, d.params, g.opt_state, d.opt_state, g.batch_stats, d.batch_stats),
            losses,
        )
    for k in (2, 4):
        # The scan runs the same computation; only XLA's fusion decisions may differ.
        _assert_trees_close(final[k][0], final[1][0], 1e-5)
        np.testing.assert_allclose(final[k][1], final[1][1], rtol=1e-5)
