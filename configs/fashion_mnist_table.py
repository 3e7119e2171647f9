"""The common budget of the toolbox table in `docs/RESULTS.md`: every row starts here.

The DCGAN of `configs/fashion_mnist.py` in float32 at batch 64 for 2,000 steps (128k
images, ~9 minutes on the 2-core development CPU), scored once at the end with
FID-10k, KID, precision/recall and density/coverage against the first 10,000
training images; the record lands in `eval/history.jsonl`, with the training
minutes. A row adds its switches on the command line, e.g.

  python train.py --config configs/fashion_mnist_table.py --workdir runs/ema \
    --config.ema_decay=0.999

`scripts/fashion_mnist_table.sh` runs every row in turn.
"""

from gan_jax.config import default_config


def get_config():
    config = default_config()
    config.dataset = "fashion_mnist"
    config.archive_dir = "/usr/share/datasets/fashion-mnist"
    config.channels = 1
    config.seed = 0
    config.dtype = "float32"
    config.batch_size = 64
    config.num_train_steps = 2_000
    config.log_every_steps = 250
    config.sample_every_steps = 1_000
    config.checkpoint_every_steps = 1_000
    config.eval_every_steps = 2_000
    config.eval_num_samples = 10_000
    config.eval_num_ref = 10_000
    return config
