"""Class-conditional GANs: labelled batches, conditional BatchNorm, projection D, sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax
from gan_jax import input_pipeline, models, sngan, trainer
from gan_jax.errors import ConfigError, GanJaxError
from gan_jax.step import balanced_labels, class_grid_latents, sample_labels


@pytest.fixture
def conditional_config(tiny_config):
    tiny_config.update(dict(conditional=True, num_classes=10))
    return tiny_config


@pytest.mark.parametrize("module", [models, sngan])
def test_models_take_labels_exactly_when_conditional(module):
    z = jnp.zeros((2, 16))
    g = module.Generator(image_size=16, channels=1, width=8, num_classes=3)
    with pytest.raises(ValueError, match="class-conditional .*pass labels"):
        g.init(jax.random.key(0), z)
    plain = module.Generator(image_size=16, channels=1, width=8)
    with pytest.raises(ValueError, match="unconditional"):
        plain.init(jax.random.key(0), z, labels=jnp.zeros((2,), jnp.int32))


@pytest.mark.parametrize("module", [models, sngan])
def test_labels_change_images_and_logits(module):
    z = jnp.tile(jax.random.normal(jax.random.key(0), (1, 16)), (3, 1))
    labels = jnp.array([0, 1, 2])
    g = module.Generator(image_size=16, channels=1, width=8, num_classes=3)
    # Jitted: one compilation per function instead of one per operation.
    g_vars = jax.jit(lambda k: g.init(k, z, labels=labels, train=False))(jax.random.key(1))
    images = jax.jit(lambda v: g.apply(v, z, labels=labels, train=False))(g_vars)
    assert images.shape == (3, 16, 16, 1)
    assert not np.allclose(images[0], images[1]) and not np.allclose(images[1], images[2])

    d = module.Discriminator(image_size=16, channels=1, width=8, num_classes=3)
    x = jnp.tile(images[:1], (3, 1, 1, 1))  # One image, three labels.
    d_vars = jax.jit(lambda k: d.init(k, x, labels=labels, train=False))(jax.random.key(2))
    d_apply = jax.jit(lambda v: d.apply(v, x, labels=labels, train=False))
    logits = d_apply(d_vars)
    assert logits.shape == (3,) and np.unique(np.asarray(logits)).size == 3
    # The projection term is the only label-dependent part: equal embeddings, equal logits.
    table = d_vars["params"]["projection"]["embedding"]
    same = jax.tree.map(lambda p: p, d_vars)
    same["params"]["projection"]["embedding"] = jnp.tile(table[:1], (3, 1))
    flat = d_apply(same)
    np.testing.assert_allclose(flat, np.full(3, flat[0]), rtol=1e-5)


def test_conditional_train_step(conditional_config):
    g, d = gan_jax.create_train_states(conditional_config, jax.random.key(0))
    assert g.spec.num_classes == 10
    assert g.params["bn0"]["scale"].shape == (10, g.params["bn0"]["scale"].shape[1])
    images = jax.random.uniform(jax.random.key(1), (8, 16, 16, 1), minval=-1, maxval=1)
    batch = {"image": images, "label": jnp.arange(8) % 10}
    step = jax.jit(gan_jax.train_step)
    g1, d1, metrics = step(g, d, batch, jax.random.key(2))
    assert all(np.isfinite(float(m)) for m in metrics.values())
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), d.params, d1.params)
    assert all(jax.tree.leaves(moved))
    with pytest.raises(ValueError, match="class-conditional"):
        step(g, d, images, jax.random.key(2))


def test_fake_labels_are_uniform():
    labels = np.asarray(sample_labels(jax.random.key(0), 20_000, 10))
    assert labels.dtype == np.int32 and labels.min() == 0 and labels.max() == 9
    counts = np.bincount(labels, minlength=10)
    assert np.all(np.abs(counts - 2000) < 150), counts


def test_generate_takes_labels(conditional_config):
    g, _ = gan_jax.create_train_states(conditional_config, jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (12, 16))
    generate_from_latent = jax.jit(gan_jax.generate_from_latent)
    default = generate_from_latent(g, z)
    balanced = generate_from_latent(g, z, labels=balanced_labels(12, 10))
    np.testing.assert_array_equal(default, balanced)
    sevens = generate_from_latent(g, z, labels=jnp.full((12,), 7))
    assert not np.allclose(sevens, default)
    assert gan_jax.generate(g, jax.random.key(2), 5, labels=jnp.arange(5)).shape == (5, 16, 16, 1)


def test_class_grid_has_one_row_per_class():
    z, labels, per_class = class_grid_latents(jax.random.key(0), 25, 10, 4)
    assert per_class == 2 and z.shape == (20, 4)
    assert labels.tolist() == [c for c in range(10) for _ in range(2)]
    np.testing.assert_array_equal(z[:2], z[18:])  # Column j has the same noise in every row.


def test_input_pipeline_yields_images_and_matching_labels(conditional_config):
    from sklearn.datasets import load_digits

    config = conditional_config
    config.image_size = 8  # The digits' own size: the pipeline's pixels are the originals.
    plain = config.copy_and_resolve_references()
    plain.conditional = False
    batch = next(input_pipeline.create_input_iter(config, process_batch_size=64))
    assert sorted(batch) == ["image", "label"]
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (64,)
    # The images come in the same order as without labels.
    images = next(input_pipeline.create_input_iter(plain, process_batch_size=64))
    np.testing.assert_array_equal(batch["image"], images)
    digits = load_digits()
    originals = np.round(digits.images * (255.0 / 16.0)) / 127.5 - 1.0
    for image, label in zip(batch["image"], batch["label"], strict=True):
        found = np.flatnonzero(np.all(np.abs(originals - image[..., 0]) < 1e-5, axis=(1, 2)))
        assert found.size and all(digits.target[found] == label)


def test_datasets_without_labels_or_other_class_counts_are_one_line_errors(
    conditional_config, tmp_path
):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    config = conditional_config
    config.update(dict(dataset=f"folder:{folder}", data_dir=str(tmp_path / "tfds")))
    with pytest.raises(GanJaxError) as e:
        input_pipeline.validate(config)
    message = str(e.value)
    assert "needs class labels" in message and "--config.conditional=False" in message
    assert "\n" not in message

    config.update(dict(dataset="digits", data_dir=None, num_classes=5))
    with pytest.raises(GanJaxError, match=r"10 classes .*--config.num_classes=10$") as e:
        input_pipeline.validate(config)
    assert "\n" not in str(e.value)


def test_bad_class_count_is_a_config_error(conditional_config):
    conditional_config.num_classes = 0
    with pytest.raises(ConfigError, match="num_classes=0 with conditional=True"):
        trainer.validate_config(conditional_config)


def test_conditional_checkpoints_do_not_resume_unconditional_runs(conditional_config):
    from gan_jax import checkpoint

    saved = checkpoint.architecture(conditional_config)
    conditional_config.conditional = False
    with pytest.raises(GanJaxError, match="num_classes: checkpoint 10 vs config 0"):
        checkpoint.check_compatible({"architecture": saved}, conditional_config, "workdir")
