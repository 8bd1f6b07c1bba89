"""Style transfer (svertka.style): the Gram matrix, the losses going down, the
image gradient on both backends, torchvision's weight names, and the CLI's bad inputs."""
import numpy as np
import pytest
from PIL import Image

from cli_helpers import one_line_error
from svertka.backends.numpy import Tensor
from svertka.errors import UsageError, WeightsError
from svertka.style import StyleObjective, StyleSettings, gram_matrix, layer_paths, stylize
from svertka.style.network import (
    build_extractor,
    detect_model,
    feature_network,
    random_weights,
    select_weights,
)
from svertka.style.transfer import to_chw

# torchvision.models.vgg: the conv layers' indices in ``features`` (cfgs "D" and "E") and the
# classifier's Linear layers; a torchvision state_dict has weight and bias for each.
TORCHVISION_CONVS = {"vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
                     "vgg19": [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]}
TORCHVISION_LINEARS = [0, 3, 6]
SMALL = StyleSettings(content_layer="relu2_2", style_layers=("relu1_1", "relu2_1"))  # a net cut early


def images(h=32, w=32, seed=0):
    """A smooth 'content' (gradients and a disc) and a striped 'style', uint8 H x W x 3."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    disc = ((y - 0.5) ** 2 + (x - 0.5) ** 2 < 0.1).astype(float)
    content = np.stack([x, y, disc], -1)
    rng = np.random.default_rng(seed)
    style = np.stack([np.sin(x * 40) > 0, np.cos(y * 25) > 0, rng.random((h, w)) > 0.5], -1)
    return (content * 255).astype(np.uint8), (style * 255).astype(np.uint8)


def objective(backend, settings, dtype=np.float64, size=32, model="vgg19"):
    content, style = images(size, size)
    layers = [settings.content_layer, *settings.style_layers]
    net = feature_network(model, layers, size, size)
    ex = build_extractor(net, random_weights(net, seed=1), layers, backend, dtype)
    return StyleObjective(ex, to_chw(content).astype(dtype), to_chw(style).astype(dtype), settings)


# ------------------------------------------------------------------ the pieces


def test_gram_matrix_against_a_direct_computation():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((1, 5, 4, 6))
    direct = np.zeros((5, 5))
    for i in range(5):
        for j in range(5):
            direct[i, j] = (f[0, i] * f[0, j]).sum() / (4 * 6)
    np.testing.assert_allclose(gram_matrix(Tensor(f)).data, direct, rtol=1e-12)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(gram_matrix(torch.from_numpy(f)).numpy(), direct, rtol=1e-12)


def test_layer_names_follow_gatys_and_torchvision():
    for model, convs in TORCHVISION_CONVS.items():
        paths = layer_paths(model)
        assert [paths[k] for k in paths if k.startswith("conv")] == [f"features.{i}" for i in convs]
    assert layer_paths("vgg19")["relu4_2"] == "features.22"
    assert layer_paths("vgg16")["relu5_1"] == "features.25"


def test_the_cut_network_has_torchvision_keys():
    """The engine's state_dict of VGG-19 cut after relu5_1 is torchvision's features keys up to conv5_1."""
    from svertka.backends.numpy import compile

    net = feature_network("vgg19", ["relu4_2", "relu5_1"], 16, 16)
    keys = list(compile(net).state_dict())
    assert keys == [f"features.{i}.{p}" for i in TORCHVISION_CONVS["vgg19"][:13] for p in ("weight", "bias")]


def torchvision_state(model, seed=3):
    """A state_dict with torchvision's keys for ``model``: the features' conv tensors are the
    ones random_weights(seed) draws; the classifier's (unused) are small stand-ins."""
    net = feature_network(model, [f"relu{b}_1" for b in range(1, 6)], 32, 32)
    state = dict(random_weights(net, seed))
    for i in TORCHVISION_CONVS[model]:  # the convs after conv5_1, deeper than any tap
        if f"features.{i}.weight" not in state:
            state[f"features.{i}.weight"] = np.broadcast_to(np.float32(0), (512, 512, 3, 3))
            state[f"features.{i}.bias"] = np.zeros(512, np.float32)
    for i in TORCHVISION_LINEARS:
        state[f"classifier.{i}.weight"], state[f"classifier.{i}.bias"] = np.zeros((2, 2)), np.zeros(2)
    return state


def test_torchvision_weights_are_detected_and_used_as_is():
    for model in ("vgg16", "vgg19"):
        state = torchvision_state(model)
        assert detect_model(state, "f.pth") == model
        net = feature_network(model, ["relu4_2", "relu5_1"], 32, 32)
        picked = select_weights(state, net, "f.pth")
        conv5_1 = int(layer_paths(model)["conv5_1"].split(".")[1])
        assert set(picked) == {f"features.{i}.{p}" for i in TORCHVISION_CONVS[model] if i <= conv5_1
                               for p in ("weight", "bias")}
    content, style = images(32, 32)
    settings = StyleSettings(steps=1, content_layer="relu2_2", style_layers=("relu1_1", "relu2_1"))
    from_file = stylize(content, style, settings, model="vgg16", state=torchvision_state("vgg16"),
                        weights_name="f.pth")
    drawn = stylize(content, style, settings, model="vgg16", seed=3)
    other = stylize(content, style, settings, model="vgg16", seed=4)
    assert [h["total"] for h in from_file.history] == pytest.approx([h["total"] for h in drawn.history],
                                                                    rel=1e-6)
    assert from_file.history[0]["style"] == pytest.approx(drawn.history[0]["style"], rel=1e-6)
    assert from_file.history[0]["style"] != pytest.approx(other.history[0]["style"], rel=1e-3)
    assert from_file.weights == "f.pth" and drawn.weights == "random (seed 3)"


def test_weights_that_do_not_fit_are_one_error():
    state = torchvision_state("vgg19")
    net = feature_network("vgg19", ["relu4_2", "relu5_1"], 32, 32)
    bad = dict(state, **{"features.5.weight": np.zeros((128, 32, 3, 3), np.float32)})
    with pytest.raises(WeightsError, match=r"features\.5\.weight is 128x32x3x3, the model's is 128x64x3x3"):
        select_weights(bad, net, "f.pth")
    with pytest.raises(WeightsError, match="no features.28.weight"):
        select_weights({k: v for k, v in state.items() if not k.startswith("features.28.")}, net, "f.pth")
    with pytest.raises(WeightsError, match="12 conv weights under features"):
        detect_model({k: v for k, v in state.items() if not k.startswith(("features.0.", "features.2.",
                                                                         "features.5.", "features.7."))},
                     "f.pth")
    with pytest.raises(WeightsError, match="batch-norm VGG"):
        detect_model(dict(state, **{"features.1.running_mean": np.zeros(64)}), "f.pth")
    with pytest.raises(WeightsError, match="0 conv weights"):
        detect_model({"conv1.weight": np.zeros((64, 3, 7, 7)), "fc.weight": np.zeros((10, 512))}, "r.pth")


def test_random_weights_do_not_depend_on_the_backend_or_dtype():
    net = feature_network("vgg16", ["relu2_1"], 16, 16)
    a, b = random_weights(net, 0), random_weights(net, 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["features.0.weight"], random_weights(net, 1)["features.0.weight"])
    std = a["features.5.weight"].std()  # He init, fan_out = 128 * 3 * 3
    assert std == pytest.approx(np.sqrt(2 / (128 * 9)), rel=0.05)


# ------------------------------------------------------------ the gradient reaches the pixels


def test_engine_image_gradient_matches_finite_differences():
    f = objective("numpy", SMALL, size=16)
    x = to_chw(images(16, 16)[0]).astype(np.float64) * 0.8 + 0.1
    x += np.random.default_rng(5).uniform(-0.05, 0.05, x.shape)  # away from the content target
    losses, grad = f(x)
    assert grad.shape == x.shape and np.abs(grad).max() > 0
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        # ReLU and max-pool kinks: a step of 1e-6 already crosses some (0.2% off); 1e-7 crosses none here
        eps = 1e-7
        numeric = (f(x + eps * v)[0]["total"] - f(x - eps * v)[0]["total"]) / (2 * eps)
        assert numeric == pytest.approx(float((grad * v).sum()), rel=1e-6)


def test_both_backends_give_the_same_image_gradient():
    """Same weights, same image, float64 on both: the losses and d loss / d pixels agree to rounding."""
    pytest.importorskip("torch")
    settings = StyleSettings(tv_weight=0.5)  # all five style layers, relu4_2 and the TV term
    x = to_chw(images(32, 32, seed=2)[1]).astype(np.float64) * 0.5 + 0.25
    out = {b: objective(b, settings)(x) for b in ("numpy", "torch")}
    (ln, gn), (lt, gt) = out["numpy"], out["torch"]
    assert set(ln) == {"content", "style", "tv", "total"} and ln == pytest.approx(lt, rel=1e-10)
    assert np.abs(gn).max() > 0
    np.testing.assert_allclose(gn, gt, rtol=1e-8, atol=1e-12 * np.abs(gt).max())


def test_float32_backends_agree_within_float32_rounding():
    pytest.importorskip("torch")
    x = to_chw(images(32, 32)[0]).astype(np.float32)
    (ln, gn), (lt, gt) = (objective(b, SMALL, np.float32)(x) for b in ("numpy", "torch"))
    assert ln["total"] == pytest.approx(lt["total"], rel=1e-4)
    # different summation orders in float32: relative to the largest component
    assert np.abs(gn - gt).max() <= 1e-4 * np.abs(gt).max()


# ------------------------------------------------------------------ the optimisation


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_losses_decrease_on_a_tiny_image(optimizer):
    content, style = images(32, 32)
    r = stylize(content, style, StyleSettings(steps=6, optimizer=optimizer, lr=0.05, style_weight=10),
                backend="numpy", seed=0)
    first, last = r.history[0], r.history[-1]
    assert len(r.history) == 7 and [h["step"] for h in r.history] == list(range(7))
    assert first["content"] == 0  # it starts from the content image
    assert last["total"] < 0.7 * first["total"] and last["style"] < 0.7 * first["style"]
    assert r.image.shape == content.shape and r.image.dtype == np.uint8
    assert not np.array_equal(r.image, content)


def test_lbfgs_solves_a_quadratic():
    """On f(x) = x.Ax / 2 - b.x (A positive definite, condition number 100) L-BFGS reaches A^-1 b."""
    from svertka.style.optimize import lbfgs

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a = q @ np.diag(np.geomspace(1, 100, 30)) @ q.T
    b = rng.standard_normal(30)
    losses = []
    x = lbfgs(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), np.zeros(30), steps=60, lr=0.1,
              record=lambda x, loss: losses.append(loss))
    # scipy's L-BFGS-B with the same memory (10) is 1.1e-6 off after 60 iterations; this code 1.0e-6
    assert np.abs(x - np.linalg.solve(a, b)).max() < 1e-5
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:]))  # Armijo: never uphill


def test_noise_init_and_total_variation():
    content, style = images(32, 32)
    r = stylize(content, style, StyleSettings(steps=4, init="noise", tv_weight=1.0, lr=0.05), seed=1)
    assert r.history[0]["content"] > 0.1 and "tv" in r.history[0]
    assert r.history[-1]["total"] < r.history[0]["total"]


def test_torch_backend_runs_the_same_optimisation():
    pytest.importorskip("torch")
    content, style = images(32, 32)
    settings = StyleSettings(steps=3, content_layer="relu2_2", style_layers=("relu1_1", "relu2_1", "relu3_1"))
    n, t = (stylize(content, style, settings, backend=b, dtype=np.float64) for b in ("numpy", "torch"))
    for hn, ht in zip(n.history, t.history):
        assert hn["total"] == pytest.approx(ht["total"], rel=1e-7)
    assert np.abs(n.image.astype(int) - t.image.astype(int)).max() <= 1


def test_bad_settings_and_sizes_are_usage_errors():
    content, style = images(32, 32)
    with pytest.raises(UsageError, match="unknown optimizer"):
        stylize(content, style, StyleSettings(optimizer="sgd"))
    with pytest.raises(UsageError, match="too small for vgg19 up to relu5_1: 4 2x2 poolings need at least"):
        stylize(content, style[:8, :8])
    with pytest.raises(UsageError, match="uint8 H x W x 3"):
        stylize(content[..., :1], style)
    with pytest.raises(UsageError, match="has no layer 'relu6_1'"):
        stylize(content, style, StyleSettings(style_layers=("relu6_1",)))


# ------------------------------------------------------------------ the command


@pytest.fixture
def photos(tmp_path):
    content, style = images(40, 48)
    Image.fromarray(content).save(tmp_path / "c.png")
    Image.fromarray(style).save(tmp_path / "s.jpg")
    return tmp_path


def test_cli_stylize_writes_the_image_and_says_the_weights_are_random(photos, capsys):
    from svertka.cli import main

    out = photos / "out.png"
    rc = main(["stylize", str(photos / "c.png"), str(photos / "s.jpg"), "--out", str(out), "--size", "32",
               "--steps", "2", "--backend", "numpy"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "random weights" in captured.err and "Ustyuzhaninov" in captured.err
    assert "vgg19 with random (seed 0) weights, numpy backend" in captured.out
    assert Image.open(out).size == (32, 27)  # W x H: 48x40 with its longer side 32
    rc = main(["stylize", str(photos / "c.png"), str(photos / "s.jpg"), "--out", str(out), "--size", "32",
               "--steps", "0", "--backend", "numpy", "-q"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err == "" and "0 steps; style loss" in captured.out


def test_cli_bad_inputs_are_one_line(photos, capsys):
    c, s, out = str(photos / "c.png"), str(photos / "s.jpg"), str(photos / "o.png")
    (photos / "notes.png").write_text("not an image")
    base = ["--backend", "numpy", "--steps", "1"]
    err = one_line_error(capsys, ["stylize", str(photos / "notes.png"), s, "--out", out, *base])
    assert "not an image Pillow can decode" in err
    err = one_line_error(capsys, ["stylize", c, str(photos / "nope.png"), "--out", out, *base])
    assert "no such image file" in err
    assert "unknown image extension '.gif'" in one_line_error(
        capsys, ["stylize", c, s, "--out", str(photos / "o.gif"), *base])
    err = one_line_error(capsys, ["stylize", c, s, "--out", out, "--size", "8", *base])
    assert "too small for vgg19" in err
    assert "does not exist" in one_line_error(capsys, ["stylize", c, s, "--out", out, "--weights",
                                                       str(photos / "vgg19.pth"), *base])
    assert "--threads sets torch's threads" in one_line_error(capsys, ["stylize", c, s, "--out", out,
                                                                       "--threads", "1", *base])
    assert "is more than stylize takes (1024)" in one_line_error(capsys, ["stylize", c, s, "--out", out,
                                                                          "--size", "5000", *base])
    assert "expected a positive integer" in one_line_error(capsys, ["stylize", c, s, "--out", out,
                                                                     "--size", "0"])


def test_cli_stylize_with_mismatched_weights(photos, capsys):
    """A .pth with torchvision's VGG-19 keys but other shapes, and one of another network."""
    torch = pytest.importorskip("torch")
    c, s, out = str(photos / "c.png"), str(photos / "s.jpg"), str(photos / "o.png")
    wrong = {f"features.{i}.weight": torch.zeros(8, 3, 3, 3) for i in TORCHVISION_CONVS["vgg19"]}
    torch.save(wrong, photos / "vgg19.pth")
    err = one_line_error(capsys, ["stylize", c, s, "--out", out, "--weights", str(photos / "vgg19.pth"),
                                  "--backend", "numpy"])
    assert "vgg19.pth does not fit vgg19-features: features.0.weight is 8x3x3x3, the model's is 64x3x3x3" \
        in err
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)},
               photos / "resnet.pth")
    err = one_line_error(capsys, ["stylize", c, s, "--out", out, "--weights", str(photos / "resnet.pth")])
    assert "does not hold VGG-16 or VGG-19 weights" in err
    torch.save({f"features.{i}.weight": torch.zeros(1, 1, 1, 1) for i in TORCHVISION_CONVS["vgg16"]},
               photos / "v16.pth")
    err = one_line_error(capsys, ["stylize", c, s, "--out", out, "--weights", str(photos / "v16.pth"),
                                  "--model", "vgg19"])
    assert "--model vgg19 does not match" in err and "holds vgg16 weights" in err
