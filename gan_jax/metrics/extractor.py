"""Batched, jit-compiled FID Inception features on every local device.

`InceptionExtractor` takes any iterable of image batches (NHWC, [-1, 1] floats or uint8,
1 or 3 channels, any size), regroups them into fixed-size batches (one compilation),
pads the last one, shards each batch over a 1-D mesh of all devices and runs
resize + scaling + network in one jitted function. The host fetches batch k's
results only after dispatching batch k + 1, so transfers overlap computation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gan_jax.metrics import inception, preprocess, weights
from gan_jax.metrics.inception import NUM_CLASSES, InceptionV3

# Images per device per step. On CPU the CPU time per image hardly depends on it
# (measured on 2 cores: 2 to 8 images within 5%, 16 ~10% more); 8 keeps two threads
# busiest. Accelerators want many more.
CPU_PER_DEVICE_BATCH = 8
ACCELERATOR_PER_DEVICE_BATCH = 64

# XLA:CPU compiles convolutions and matrix products to YNNPACK by default (jax 0.10);
# for this network its Eigen kernels are faster: ~8% less CPU time per image, and up
# to 1.6x on single layers (the stride-2 and 8x8 ones). Only this jit is affected.
_CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def cpu_compiler_options() -> dict[str, str] | None:
    """The compiler options the extractor gives its CPU jit; None where XLA lacks them."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_COMPILER_OPTIONS).lower(1.0).compile()
    except Exception:  # an XLA without the option: compile as usual
        return None
    return dict(_CPU_COMPILER_OPTIONS)


@dataclasses.dataclass
class Activations:
    """Network outputs for a set of images, plus how they were computed."""

    features: np.ndarray  # (N, 2048) float32 pool features.
    logits: np.ndarray | None  # (N, 1008) float32 classifier outputs, None without a classifier.
    resize_mode: str
    weights_id: str


class InceptionExtractor:
    """FID Inception features (and logits) for batches of library images.

    Args:
      weights_path: the converted weights file; None reads `weights.default_weights_path()`.
      resize_mode: "tf1" (default; TensorFlow/StyleGAN2-ADA) or "pytorch" (pytorch-fid),
        see `preprocess`.
      batch_size: images per jitted step over all devices (rounded up to a multiple of
        the device count); None uses 8 per CPU device, 64 per accelerator.
      quantize: round float images to 8-bit levels first, as saving them would.
      logits: compute classifier logits; None does so when the weights have a classifier.
      classifier_bias: add the classifier bias to the logits (the Inception Score's
        reference code does not).
      devices: devices to shard over; None uses all of `jax.devices()`.
      params: already loaded parameters, instead of reading `weights_path`.
      weights_id: their id (default: hashed from `params`).
    """

    def __init__(
        self,
        weights_path: str | None = None,
        *,
        resize_mode: str = "tf1",
        batch_size: int | None = None,
        quantize: bool = True,
        logits: bool | None = None,
        classifier_bias: bool = False,
        devices: list[Any] | None = None,
        params: dict | None = None,
        weights_id: str | None = None,
    ):
        self.resize_mode = preprocess.check_resize_mode(resize_mode)
        self.quantize = quantize
        if params is None:
            params, meta = weights.load_weights(weights_path)
            weights_id = meta["weights_id"]
        has_logits = "fc" in params
        if logits and not has_logits:
            raise ValueError(
                "these Inception weights have no classifier, so no logits / Inception Score; "
                "convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth instead "
                "(python -m gan_jax.metrics.convert --src FILE)."
            )
        self.with_logits = has_logits if logits is None else logits
        self.weights_id = weights_id or weights.weights_id(params)
        if not self.with_logits:
            params = {k: v for k, v in params.items() if k != "fc"}
        devices = list(devices or jax.devices())
        self.mesh = Mesh(np.array(devices), ("batch",))
        n = len(devices)
        per_device = (
            CPU_PER_DEVICE_BATCH if devices[0].platform == "cpu" else ACCELERATOR_PER_DEVICE_BATCH
        )
        size = batch_size or per_device * n
        self.batch_size = -(-size // n) * n
        self._data_sharding = NamedSharding(self.mesh, PartitionSpec("batch"))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        cpu = devices[0].platform == "cpu"
        options = cpu_compiler_options() if cpu else None
        model = InceptionV3(
            num_classes=NUM_CLASSES if self.with_logits else None,
            classifier_bias=classifier_bias,
            stem_batch=n if cpu else 0,  # one image per device
            pad_unpadded=cpu and options is None,  # only YNNPACK's kernels need it
        )
        self._variables = jax.device_put(inception.prepare(model, params), replicated)

        def forward(variables: dict, images: jax.Array) -> tuple[jax.Array, jax.Array | None]:
            x = preprocess.to_inception_input(images, self.resize_mode, quantize)
            return model.apply(variables, x)

        self._forward = jax.jit(
            forward,
            in_shardings=(replicated, self._data_sharding),
            out_shardings=self._data_sharding,
            compiler_options=options,
        )

    def network_input(self, images_NxHxWxC: np.ndarray) -> jax.Array:
        """The (N, 299, 299, 3) array the network sees for these images (for inspection)."""
        return preprocess.to_inception_input(
            jnp.asarray(images_NxHxWxC), self.resize_mode, self.quantize
        )

    def extract(
        self,
        batches: Iterable[np.ndarray],
        num_images: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Activations:
        """Features (and logits) of the images in `batches`, at most `num_images` of them.

        `progress`, when given, is called with 0 as the work starts (the first batch
        compiles) and then with the number of images of each finished batch, e.g. a
        tqdm bar's `update`.
        """
        report = progress or (lambda n: None)
        report(0)
        feats, logits, pending = [], [], None
        for images, valid in _fixed_batches(batches, self.batch_size, num_images):
            out = self._forward(self._variables, jax.device_put(images, self._data_sharding))
            if pending is not None:
                report(_collect(pending, feats, logits))
            pending = (out, valid)
        if pending is not None:
            report(_collect(pending, feats, logits))
        if not feats:
            raise ValueError("no images to evaluate: the batch iterable was empty.")
        return Activations(
            features=np.concatenate(feats),
            logits=np.concatenate(logits) if self.with_logits else None,
            resize_mode=self.resize_mode,
            weights_id=self.weights_id,
        )

    def __call__(self, images_NxHxWxC: np.ndarray) -> Activations:
        """Activations of one array of images (any N)."""
        return self.extract([images_NxHxWxC])


def _collect(pending: tuple, feats: list, logits: list) -> int:
    """Fetches a dispatched batch's results; returns its number of real images."""
    (f, lg), valid = pending
    feats.append(np.asarray(f)[:valid])
    if lg is not None:
        logits.append(np.asarray(lg)[:valid])
    return valid


def _fixed_batches(
    batches: Iterable[np.ndarray], size: int, limit: int | None
) -> Iterator[tuple[np.ndarray, int]]:
    """Regroups batches of any size into (batch of exactly `size`, number of real images)."""
    pending: list[np.ndarray] = []
    count = total = 0
    for batch in batches:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] not in (1, 3):
            raise ValueError(
                f"image batches must be NHWC with 1 or 3 channels, got shape {batch.shape}; "
                "add a batch axis or a channel axis."
            )
        preprocess.check_value_range(batch)
        if pending and batch.shape[1:] != pending[0].shape[1:]:
            raise ValueError(
                f"image shape changed from {pending[0].shape[1:]} to {batch.shape[1:]}; "
                "give every batch the same height, width and channels."
            )
        if limit is not None:
            batch = batch[: limit - total]
        total += len(batch)
        pending.append(batch)
        count += len(batch)
        while count >= size:
            merged = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield merged[:size], size
            pending, count = [merged[size:]], count - size
        if limit is not None and total >= limit:
            break
    if count:
        merged = np.concatenate(pending)
        padding = np.zeros((size - count, *merged.shape[1:]), merged.dtype)
        yield np.concatenate([merged, padding]), count
