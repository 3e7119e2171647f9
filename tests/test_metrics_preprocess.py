"""Input conversion for the FID Inception: value ranges, channels and both resize conventions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.metrics import preprocess


def _images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


@pytest.mark.parametrize("in_size", [28, 32, 64, 400])
@pytest.mark.parametrize("mode", ["tf1", "pytorch"])
def test_resize_matrix_rows_are_convex_weights_of_two_neighbours(in_size, mode):
    m = preprocess.resize_matrix(in_size, 299, mode)
    assert m.shape == (299, in_size)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    assert (m >= 0).all() and ((m > 0).sum(axis=1) <= 2).all()


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 24, 3), (1, 400, 350, 3)])
def test_tf1_resize_matches_tensorflow_legacy_bilinear(shape):
    tf = pytest.importorskip("tensorflow")
    x = _images(shape)
    expected = tf.compat.v1.image.resize_bilinear(
        x, (299, 299), align_corners=False, half_pixel_centers=False
    ).numpy()
    got = np.asarray(preprocess.resize_bilinear(jnp.asarray(x), 299, "tf1"))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3)  # values up to 255


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 24, 3), (1, 400, 350, 3)])
def test_pytorch_resize_matches_torch_interpolate(shape):
    torch = pytest.importorskip("torch")
    x = _images(shape, seed=1)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    expected = (
        torch.nn.functional.interpolate(xt, size=(299, 299), mode="bilinear", align_corners=False)
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    got = np.asarray(preprocess.resize_bilinear(jnp.asarray(x), 299, "pytorch"))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3)


def test_pytorch_resize_equals_jax_image_resize_when_upsampling():
    x = jnp.asarray(_images((2, 32, 32, 3), seed=2))
    expected = jax.image.resize(x, (2, 299, 299, 3), "bilinear", antialias=False)
    got = preprocess.resize_bilinear(x, 299, "pytorch")
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=2e-3)


def test_the_two_conventions_differ():
    x = jnp.asarray(_images((1, 32, 32, 1), seed=3))
    a = preprocess.resize_bilinear(x, 299, "tf1")
    b = preprocess.resize_bilinear(x, 299, "pytorch")
    assert float(jnp.max(jnp.abs(a - b))) > 1.0


def test_uint8_and_float_inputs_give_the_same_network_input():
    u8 = np.random.default_rng(4).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    as_float = u8.astype(np.float32) / 127.5 - 1.0
    a = preprocess.to_inception_input(jnp.asarray(u8))
    b = preprocess.to_inception_input(jnp.asarray(as_float))
    assert a.shape == (3, 299, 299, 3)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(a.min()) >= -1.0 and float(a.max()) < 1.0


def test_float_inputs_are_quantised_to_8_bit_levels():
    x = jnp.full((1, 299, 299, 3), 0.3, jnp.float32)
    y = np.asarray(preprocess.to_inception_input(x))
    level = np.floor(0.3 * 127.5 + 128.0)
    np.testing.assert_allclose(y, (level - 128.0) / 128.0)
    unq = np.asarray(preprocess.to_inception_input(x, quantize=False))
    np.testing.assert_allclose(unq, (0.3 * 127.5 + 127.5 - 128.0) / 128.0, rtol=1e-6)


def test_grayscale_is_replicated_to_three_channels():
    x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (2, 28, 28, 1)), jnp.float32)
    y = np.asarray(preprocess.to_inception_input(x))
    assert y.shape == (2, 299, 299, 3)
    np.testing.assert_array_equal(y[..., 0], y[..., 1])
    np.testing.assert_array_equal(y[..., 0], y[..., 2])


def test_bad_inputs_raise_with_the_fix():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        preprocess.check_value_range(np.full((1, 8, 8, 3), 200.0, np.float32))
    preprocess.check_value_range(np.full((1, 8, 8, 3), 200, np.uint8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        preprocess.to_inception_input(jnp.zeros((1, 8, 8, 4)))
    with pytest.raises(ValueError, match="resize mode"):
        preprocess.resize_matrix(8, 299, "nearest")
