"""CelebA faces at 64x64 (one more DCGAN stage, as in pytorch/examples).

tfds's `celeb_a` needs the files downloaded by hand into its manual directory;
alternatively point `dataset` at a folder of the aligned images:
`--config.dataset=folder:/path/to/img_align_celeba`.
"""

from gan_jax.config import default_config


def get_config():
    config = default_config()
    config.dataset = "celeb_a"
    config.image_size = 64
    config.channels = 3
    config.shuffle_buffer = 20_000
    config.num_train_steps = 100_000
    return config
