"""Every zoo model compiles to torch: parameter and buffer counts equal the
analysis's, module paths equal the spec's, a forward pass gives the predicted
shape, and the state_dict keys are torchvision's for the models torchvision has.

The torchvision key lists below are written out independently from
torchvision's module structure (torchvision itself is not a dependency)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from svertka.analysis import analyze, min_input_size  # noqa: E402
from svertka.backends.torch import compile  # noqa: E402
from svertka.zoo import create_model, list_models  # noqa: E402

MODELS = list_models()


def _meta_model(net):
    """Compile without allocating weights: counts and keys only."""
    with torch.device("meta"):
        return compile(net)


@pytest.mark.parametrize("name", MODELS)
def test_counts_and_paths_match_the_analysis(name):
    net = create_model(name)
    a = analyze(net)
    model = _meta_model(net)
    assert sum(p.numel() for p in model.parameters()) == a.params
    params = {id(p) for p in model.parameters()}
    buffers = sum(v.numel() for v in model.state_dict(keep_vars=True).values() if id(v) not in params)
    assert buffers == a.buffers
    assert [p for p, _ in model.named_modules()] == [p for p, _ in net.named_nodes()]
    ref = net.meta.get("reference", {})
    if isinstance(ref.get("params"), int) and ref.get("exact", True):
        assert sum(p.numel() for p in model.parameters()) == ref["params"]


def _small_size(net):
    c = net.input_shape[0]
    # None: only sizes near the default fit (a task model's fixed 8x8 head), so use the default
    return c, max(min_input_size(net, c) or net.input_shape[1], min(32, net.input_shape[1]))


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_the_predicted_shape(name):
    net = create_model(name, num_classes=7)
    c, s = _small_size(net)
    torch.manual_seed(0)
    model = compile(net, (c, s, s)).eval()
    with torch.inference_mode():
        y = model(torch.randn(2, c, s, s))
    assert tuple(y.shape) == (2, *analyze(net, (c, s, s)).output_shape)
    # a classifier's logits, a segmenter's 7 x H x W scores, or a detector's 7 heatmaps + 4 box maps;
    # the points and localize models' numbers are checked in their own tests
    if net.meta.get("family") != "tasks":
        assert y.shape[1] == (7 + 4 if net.meta.get("task") == "detect" else 7)
    assert torch.isfinite(y).all()


# ------------------------------------------------------------ torchvision's keys


def _bn(p):
    return [f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var",
            f"{p}.num_batches_tracked"]


def tv_alexnet():
    keys = []
    for i in (0, 3, 6, 8, 10):
        keys += [f"features.{i}.weight", f"features.{i}.bias"]
    for i in (1, 4, 6):
        keys += [f"classifier.{i}.weight", f"classifier.{i}.bias"]
    return keys


VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def tv_vgg(cfg, bn):
    keys, i = [], 0
    for v in cfg:
        if v == "M":
            i += 1
            continue
        keys += [f"features.{i}.weight", f"features.{i}.bias"]
        if bn:
            keys += [k for k in _bn(f"features.{i + 1}")]
        i += 3 if bn else 2
    for j in (0, 3, 6):
        keys += [f"classifier.{j}.weight", f"classifier.{j}.bias"]
    return keys


def tv_resnet(blocks, bottleneck):
    keys = ["conv1.weight"] + _bn("bn1")
    convs = 3 if bottleneck else 2
    for stage, n in enumerate(blocks, 1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            for c in range(1, convs + 1):
                keys += [f"{p}.conv{c}.weight"] + _bn(f"{p}.bn{c}")
            if b == 0 and (stage > 1 or bottleneck):
                keys += [f"{p}.downsample.0.weight"] + _bn(f"{p}.downsample.1")
    return keys + ["fc.weight", "fc.bias"]


def _cna(p):  # Conv2dNormActivation: 0 conv (no bias), 1 BN
    return [f"{p}.0.weight"] + _bn(f"{p}.1")


def tv_mobilenet_v2():
    keys = _cna("features.0")
    i = 1
    for t, _, n, _ in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:
        for _ in range(n):
            p, j = f"features.{i}.conv", 0
            if t != 1:
                keys += _cna(f"{p}.0")
                j = 1
            keys += _cna(f"{p}.{j}") + [f"{p}.{j + 1}.weight"] + _bn(f"{p}.{j + 2}")
            i += 1
    return keys + _cna("features.18") + ["classifier.1.weight", "classifier.1.bias"]


def tv_efficientnet_b0():
    keys = _cna("features.0")
    for stage, (t, n) in enumerate([(1, 1), (6, 2), (6, 2), (6, 3), (6, 3), (6, 4), (6, 1)], 1):
        for b in range(n):
            p, j = f"features.{stage}.{b}.block", 0
            if t != 1:
                keys += _cna(f"{p}.0")
                j = 1
            keys += _cna(f"{p}.{j}")
            keys += [f"{p}.{j + 1}.fc1.weight", f"{p}.{j + 1}.fc1.bias",
                     f"{p}.{j + 1}.fc2.weight", f"{p}.{j + 1}.fc2.bias"]
            keys += _cna(f"{p}.{j + 2}")
    return keys + _cna("features.8") + ["classifier.1.weight", "classifier.1.bias"]


def tv_googlenet():
    def basic(p):
        return [f"{p}.conv.weight"] + _bn(f"{p}.bn")

    keys = basic("conv1") + basic("conv2") + basic("conv3")
    for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        p = f"inception{name}"
        for b in ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"):
            keys += basic(f"{p}.{b}")
    return keys + ["fc.weight", "fc.bias"]


TORCHVISION_KEYS = {
    "alexnet": tv_alexnet,
    **{f"{v}{s}": (lambda v=v, bn=bool(s): tv_vgg(VGG_CFG[v], bn)) for v in VGG_CFG for s in ("", "_bn")},
    "resnet18": lambda: tv_resnet([2, 2, 2, 2], False),
    "resnet34": lambda: tv_resnet([3, 4, 6, 3], False),
    "resnet50": lambda: tv_resnet([3, 4, 6, 3], True),
    "resnet101": lambda: tv_resnet([3, 4, 23, 3], True),
    "resnet152": lambda: tv_resnet([3, 8, 36, 3], True),
    "mobilenet_v2": tv_mobilenet_v2,
    "efficientnet_b0": tv_efficientnet_b0,
    "googlenet": tv_googlenet,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_state_dict_keys_are_torchvisions(name):
    model = _meta_model(create_model(name))
    expected = TORCHVISION_KEYS[name]()
    assert len(expected) == len(set(expected))
    got = list(model.state_dict())
    assert set(got) ^ set(expected) == set()
    assert got == expected  # same order as torchvision's module registration


DOCUMENTED = {
    "alexnet": ("features.0.weight", (64, 3, 11, 11)),
    "resnet50": ("layer1.0.downsample.0.weight", (256, 64, 1, 1)),
    "mobilenet_v2": ("features.1.conv.0.0.weight", (32, 1, 3, 3)),
    "efficientnet_b0": ("features.1.0.block.1.fc1.weight", (8, 32, 1, 1)),
    "googlenet": ("inception3a.branch2.0.conv.weight", (96, 192, 1, 1)),
    "vgg16": ("classifier.6.weight", (1000, 4096)),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_keys_and_shapes(name):
    key, shape = DOCUMENTED[name]
    sd = _meta_model(create_model(name)).state_dict()
    assert tuple(sd[key].shape) == shape


def test_torchvision_shaped_checkpoint_loads(tmp_path):
    """A state_dict with torchvision's keys and shapes (resnet18, 1000 classes)
    loads strictly through the .pth path; so does one with googlenet's
    auxiliary heads, which torchvision's file carries and drops after loading."""
    from svertka.backends.torch import load_weights

    model = compile(create_model("resnet18"))
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    torch.save(sd, tmp_path / "resnet18.pth")
    load_weights(model, tmp_path / "resnet18.pth")
    assert model.fc.weight.abs().sum() == 0

    g = compile(create_model("googlenet"))
    sd = dict(g.state_dict())
    sd["aux1.conv.conv.weight"] = torch.zeros(128, 512, 1, 1)
    sd["aux2.fc2.weight"] = torch.zeros(1000, 1024)
    torch.save(sd, tmp_path / "googlenet.pth")
    load_weights(g, tmp_path / "googlenet.pth")
