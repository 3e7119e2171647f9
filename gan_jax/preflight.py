"""Cheap checks of a run's input, done before any slow set-up and before anything is written.

Loading TensorFlow, preparing a dataset and compiling take from seconds to minutes;
a missing image folder or an unwritable workdir should be reported before them,
and leave no directory behind.
"""

from __future__ import annotations

import os

import ml_collections

from gan_jax.errors import ConfigError

# The `config.dataset` prefix of a folder of the user's images.
FOLDER_PREFIX = "folder:"


def check_folder_dataset(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError when `config.dataset` is "folder:PATH" and PATH is not a folder.

    Example:
      >>> import gan_jax
      >>> from gan_jax.preflight import check_folder_dataset
      >>> config = gan_jax.default_config()
      >>> config.dataset = "folder:/no/such/folder"
      >>> check_folder_dataset(config)
      Traceback (most recent call last):
      gan_jax.errors.ConfigError: image folder /no/such/folder does not exist ...
    """
    dataset = config.get("dataset") or ""
    if not dataset.startswith(FOLDER_PREFIX):
        return
    folder = os.path.abspath(os.path.expanduser(dataset[len(FOLDER_PREFIX) :]))
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise ConfigError(
            f"image folder {folder} {what}: fix the path in --config.dataset=folder:/path/to/images"
        )


def check_workdir(workdir: str) -> str:
    """The absolute `workdir`; raises ConfigError if it could not be created or written.

    Creates nothing: the nearest existing directory on the path must be writable
    (and `workdir` itself a directory if it exists).

    Example:
      >>> import os, tempfile
      >>> from gan_jax.preflight import check_workdir
      >>> root = tempfile.mkdtemp()
      >>> check_workdir(os.path.join(root, "run", "one")) == os.path.join(root, "run", "one")
      True
      >>> os.listdir(root)  # nothing was created
      []
    """
    workdir = os.path.abspath(os.path.expanduser(workdir))
    path = workdir
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        problem = f"{path} is a file" if path != workdir else "it is a file"
    elif not os.access(path, os.W_OK | os.X_OK):
        problem = f"{path} is read-only for this user" if path != workdir else "it is read-only"
    else:
        return workdir
    raise ConfigError(f"workdir {workdir} is not writable ({problem}); choose another --workdir.")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The instruction-set flags of this machine's CPU (Linux `/proc/cpuinfo`), or None
    where they cannot be read (another OS)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def slow_bfloat16_warning(
    dtype: str, backend: str, flags: frozenset[str] | None = None
) -> str | None:
    """Why `dtype="bfloat16"` would make this machine slower, or None.

    On a CPU, bfloat16 pays off only with AMX matrix units (`amx_bf16`): measured on
    the DCGAN step it is ~2x float32 with AMX, ~0.85x with only `avx512_bf16`, and
    far slower again with neither (each product is emulated). The dtype is not changed
    behind the user's back: the numbers would differ from the ones asked for.

    Example:
      >>> from gan_jax.preflight import slow_bfloat16_warning
      >>> slow_bfloat16_warning("bfloat16", "cpu", frozenset({"avx2", "amx_bf16"})) is None
      True
      >>> print(slow_bfloat16_warning("bfloat16", "cpu", frozenset({"avx2"})))
      dtype=bfloat16 on a CPU without AMX (amx_bf16) or avx512_bf16 is emulated, ...
    """
    if dtype != "bfloat16" or backend != "cpu":
        return None
    flags = cpu_flags() if flags is None else flags
    if flags is None or "amx_bf16" in flags:
        return None
    if "avx512_bf16" in flags:
        what, speed = "without AMX (amx_bf16)", "runs at ~0.85x float32"
    else:
        what, speed = "without AMX (amx_bf16) or avx512_bf16", "is emulated, several times slower"
    return (
        f"dtype=bfloat16 on a CPU {what} {speed}; for speed use --config.dtype=float32 "
        "(bfloat16 pays off on AMX CPUs, GPUs and TPUs)."
    )
