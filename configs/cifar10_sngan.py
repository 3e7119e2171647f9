"""SNGAN on CIFAR-10: the "standard CNN" of Miyato et al. (2018) with spectral norm and hinge loss.

The architecture is Table 3 of the paper (`config.arch = "sngan_cnn"`, see
`gan_jax/sngan.py`): G maps z (128) through a dense layer to 4x4x512 and three
4x4 stride-2 transposed convolutions (256, 128, 64 channels, BatchNorm and ReLU)
to a 3x3 convolution with 3 channels and tanh; D has 3x3 and 4x4 stride-2
convolutions of 64, 64, 128, 128, 256, 256 and 512 channels with leaky ReLU 0.1
and a dense layer to one logit, every weight spectrally normalised. Batch 64.

Optimiser: Adam with learning rate 2e-4, b1 = 0.5, b2 = 0.999 and five D updates
per G update: setting C of the paper's Table 1, one of the two settings in which
SN-GAN did well (the other, A, is 1e-4 / 0.5 / 0.9 with n_dis 5:
`--config.g_learning_rate=1e-4 --config.d_learning_rate=1e-4 --config.b2=0.9`).
The paper trains for 100k generator updates; the step counter counts D updates,
hence 500k steps.

Data: tfds's `cifar10`, downloaded on first use. On a machine without network,
put `cifar-10-python.tar.gz` (or its extracted `cifar-10-batches-py/`) in a
folder and pass `--config.archive_dir=/that/folder`. `--config.conditional=True`
trains the class-conditional variant (conditional BatchNorm in G, projection D).
"""

from gan_jax.config import default_config


def get_config():
    config = default_config()
    config.dataset = "cifar10"
    config.image_size = 32
    config.channels = 3

    config.arch = "sngan_cnn"
    config.latent_dim = 128
    config.g_width = 64
    config.d_width = 64
    config.spectral_norm = True
    config.loss = "hinge"

    config.batch_size = 64
    config.n_dis = 5
    config.g_learning_rate = 2e-4
    config.d_learning_rate = 2e-4
    config.b1 = 0.5
    config.b2 = 0.999
    config.num_train_steps = 500_000
    config.checkpoint_every_steps = 5_000
    config.sample_every_steps = 5_000
    return config
