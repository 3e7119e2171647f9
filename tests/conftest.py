"""Shared test settings: small, fast configs and a CPU-only TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# The test programs are tiny: compiling them takes far longer than running them, and
# LLVM's optimisation passes are most of the compile time (about half of a training
# step's, four fifths of an initialiser's). Subprocesses inherit the setting through
# XLA_FLAGS (a test that sets XLA_FLAGS for a child appends to it).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import gc  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Reuse compiled programs across test processes and runs (subprocess tests compile the
# same small models many times).
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get(
        "GAN_JAX_TEST_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), "gan_jax_jit_cache")
    ),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_collection_modifyitems(config, items):
    if any(d.platform == "gpu" for d in jax.devices()):
        return
    skip = pytest.mark.skip(reason="needs a GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    """Drops each module's compiled programs and traces after it, to bound the memory of
    the whole run; the persistent cache makes compiling one again cheap."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def tiny_config():
    """A small 16x16 grayscale DCGAN on the embedded digits (`tiny_gan.py`): a step takes
    milliseconds."""
    import tiny_gan

    return tiny_gan.config()
