"""The default configuration: the classic DCGAN on CIFAR-10 (32x32x3, batch 128, Adam 2e-4/0.5)."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
    """The default `ConfigDict`; `configs/default.py:get_config()` returns the same.

    Example:
      >>> import gan_jax
      >>> config = gan_jax.default_config()
      >>> config.dataset, config.batch_size, config.g_learning_rate
      ('cifar10', 128, 0.0002)
    """
    config = ml_collections.ConfigDict()
    # Same seed, same run: parameters, noise and data order all derive from it.
    config.seed = 0

    # Data.
    # A tfds name (cifar10, mnist, fashion_mnist, celeb_a, lsun/bedroom, ...),
    # "digits" (scikit-learn's bundled 8x8 digits, no download) or
    # "folder:/path/to/images" (your own png/jpg files, nested or flat).
    config.dataset = "cifar10"
    # tfds data directory; None uses tfds's default (~/tensorflow_datasets).
    config.data_dir = config_dict.placeholder(str)
    # Directory with the original archive files of mnist, fashion_mnist or
    # cifar10, to prepare them offline instead of downloading; None downloads.
    config.archive_dir = config_dict.placeholder(str)
    # Let tfds download and prepare a dataset that is not in data_dir yet.
    config.download = True
    # tfds split to train on.
    config.split = "train"
    # Side of the square training images (a power of two, 16 to 256).
    config.image_size = 32
    # Image channels: 1 (grayscale) or 3 (RGB); data is converted to match.
    config.channels = 3
    # Examples are shuffled in windows of this many (a window >= the split is a full permutation).
    config.shuffle_buffer = 50_000
    # Unreadable images in a folder dataset: "fail" or "skip" (skipped ones are counted).
    config.bad_images = "fail"

    # Model.
    # Architecture of both networks: "dcgan" (the classic DCGAN) or "sngan_cnn"
    # (the SNGAN paper's "standard CNN": 3x3 and 4x4 convolutions, leaky ReLU 0.1
    # and no BatchNorm in D; see configs/cifar10_sngan.py).
    config.arch = "dcgan"
    # Size of the generator's input noise.
    config.latent_dim = 100
    # Channels of the generator's last hidden stage (earlier stages double it).
    config.g_width = 64
    # Channels of the discriminator's first stage (later stages double it).
    config.d_width = 64
    # Computation dtype: "float32", or "bfloat16" (parameters, optimiser and
    # BatchNorm statistics stay float32).
    config.dtype = "float32"
    # Compute the generator's transposed convolutions as sub-pixel convolutions
    # (the same function; faster on some hardware).
    config.subpixel = False
    # Spectral normalisation of every discriminator weight (Miyato et al. 2018), one
    # power iteration per step, its vectors kept in batch_stats. As in SNGAN, the
    # discriminator then has no BatchNorm (its layers get biases instead).
    config.spectral_norm = False
    # Class-conditional GAN: conditional BatchNorm in G, a projection discriminator
    # (Miyato & Koyama 2018), labels from the dataset (cifar10, mnist, fashion_mnist
    # and digits have them); sample grids show one row per class.
    config.conditional = False
    # Classes of a conditional model; must equal the dataset's.
    config.num_classes = 10

    # Optimisation.
    # GAN loss: non_saturating, hinge, wasserstein or least_squares.
    config.loss = "non_saturating"
    # Global batch size (split over all devices).
    config.batch_size = 128
    # Discriminator updates per generator update (the step counter counts D updates).
    config.n_dis = 1
    # R1 penalty weight gamma on real images (0 disables) and its lazy interval.
    config.r1_gamma = 0.0
    config.r1_interval = 1
    # WGAN-GP gradient penalty weight (use with loss="wasserstein"; 0 disables).
    config.gp_weight = 0.0
    # DiffAugment policy applied to D's real and fake inputs, e.g.
    # "color,translation,cutout"; "" disables.
    config.diff_augment = ""
    # Generator EMA decay for sampling and evaluation (e.g. 0.999; 0 disables).
    config.ema_decay = 0.0
    # Training steps: one D update each, and one G update every n_dis-th step.
    config.num_train_steps = 50_000
    # Adam learning rates and moments, as in the DCGAN paper.
    config.g_learning_rate = 2e-4
    config.d_learning_rate = 2e-4
    config.b1 = 0.5
    config.b2 = 0.999
    config.adam_eps = 1e-8
    # Learning-rate schedule of both optimisers: "constant", or "linear" / "cosine"
    # decay to 0 at num_train_steps (the run's length fixes the schedule).
    config.lr_schedule = "constant"
    # Steps of linear learning-rate warm-up from 0 at the start (0: none).
    config.lr_warmup_steps = 0

    # Devices.
    # "auto": jax.jit with the batch sharded over all devices; "pmap": jax.pmap.
    config.parallel = "auto"
    # Training steps run per dispatch to the device (lax.scan over that many batches).
    config.steps_per_dispatch = 1

    # Logging and checkpoints.
    # Steps between metric logs (the only time the host waits for the device).
    config.log_every_steps = 100
    # Steps between sample grids (fixed noise); 0 disables.
    config.sample_every_steps = 1000
    # Number of images in a sample grid (a square number looks best).
    config.num_sample_images = 64
    # Steps between checkpoints; a checkpoint is also written at the end and on SIGTERM/Ctrl-C.
    config.checkpoint_every_steps = 1000
    # Checkpoints kept in the workdir.
    config.keep_checkpoints = 3
    # When a loss or parameter is NaN/inf (losses are checked at every log, the
    # whole state before every save): "halt" stops with an error naming the step;
    # "rollback" goes back to the last checkpoint and skips the batches read since
    # (at most 3 times per checkpoint, then halts).
    config.on_nonfinite = "halt"

    # Evaluation during training.
    # Steps between FID evaluations (0 disables). Each one logs fid and kid and,
    # when the FID is the best so far, saves the state in checkpoints_best/.
    config.eval_every_steps = 0
    # Generated images per evaluation (FID is biased upwards for small samples:
    # compare runs at the same count; `python -m gan_jax.evaluate` does 10k).
    config.eval_num_samples = 2_000
    # Reference images, the first of the split (0: the whole split); their
    # statistics are computed once and cached.
    config.eval_num_ref = 10_000
    # Split of the reference images; None: the training split (`split`). A run on
    # a slice of the data (split="train[:10%]") is compared with the same real
    # images as a run on all of it with eval_split="train".
    config.eval_split = config_dict.placeholder(str)
    # Resize to the Inception's 299x299: "tf1" (TensorFlow/StyleGAN2-ADA, the
    # FID usually quoted) or "pytorch" (pytorch-fid).
    config.eval_resize = "tf1"
    # Converted Inception weights; None uses $GAN_JAX_INCEPTION_WEIGHTS or
    # ~/.cache/gan_jax/inception-2015-12-05.msgpack (docs/evaluation.md).
    config.inception_weights = config_dict.placeholder(str)
    # Where reference statistics are cached; None: fid_stats/ beside the weights.
    config.fid_stats_dir = config_dict.placeholder(str)
    return config
