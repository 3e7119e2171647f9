"""Writes tests/golden/run_v1/: a tiny trainer run in the run-directory format of version 1.

The fixture freezes today's on-disk format (config.json, checkpoints/, checkpoints_best/,
eval/history.jsonl, tensorboard/) so that later code is tested against it: see
tests/test_rundir_compat.py. Do not rerun this to "fix" that test; a new format gets a
new fixture (run_v2) next to this one, and run_v1 keeps loading.

    PYTHONPATH=$PWD python tests/golden/make_run_v1.py

The FID evaluation uses a fixed random projection of the pixels instead of the
Inception network (cheap, and the directory layout is the same).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "run_v1")
# The fixed key of the expected images, and how many.
IMAGE_SEED, NUM_IMAGES = 1, 8


class ProjectionExtractor:
    """Stands in for the Inception network: features are a fixed random projection."""

    def __init__(self, *args, resize_mode="tf1", **kwargs):
        self.resize_mode = resize_mode
        self.weights_id = "projection"

    def extract(self, batches, num_images=None):
        from gan_jax.metrics.extractor import Activations

        x = np.concatenate(list(batches))[:num_images].astype(np.float64)
        proj = np.random.default_rng(0).normal(size=(int(np.prod(x.shape[1:])), 8))
        features = (x.reshape(len(x), -1) @ proj).astype(np.float32)
        return Activations(features, None, self.resize_mode, self.weights_id)


def tiny_config():
    from gan_jax import default_config

    config = default_config()
    config.update(
        dict(
            dataset="digits",
            image_size=16,
            channels=1,
            g_width=8,
            d_width=8,
            latent_dim=16,
            batch_size=16,
            num_train_steps=8,
            log_every_steps=2,
            sample_every_steps=0,
            checkpoint_every_steps=8,
            ema_decay=0.9,
            eval_every_steps=4,
            eval_num_samples=16,
            eval_num_ref=32,
        )
    )
    return config


def main() -> None:
    import gan_jax
    import gan_jax.metrics.extractor

    gan_jax.metrics.extractor.InceptionExtractor = ProjectionExtractor
    config = tiny_config()
    scratch = tempfile.mkdtemp()
    weights = os.path.join(scratch, "weights.msgpack")
    with open(weights, "wb") as f:
        f.write(b"not read: the extractor is replaced")
    config.inception_weights = weights
    config.fid_stats_dir = os.path.join(scratch, "stats")
    if os.path.exists(OUT):
        sys.exit(f"{OUT} exists; remove it first (and read this file's docstring).")
    with contextlib.redirect_stdout(sys.stderr):
        gan_jax.train_and_evaluate(config, OUT)
    shutil.rmtree(scratch)
    run = gan_jax.load_run(OUT)
    best = gan_jax.load_run(OUT, best=True)
    key = jax.random.key(IMAGE_SEED)
    images = np.asarray(gan_jax.generate(run.g_state, key, NUM_IMAGES))
    np.save(os.path.join(HERE, "run_v1_images.npy"), images)
    print(f"wrote {OUT} (latest step {run.step}, best step {best.step})")


if __name__ == "__main__":
    main()
