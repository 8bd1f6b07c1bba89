"""Every zoo model's parameter and MAC counts against the published figures.

The tables below are copied from the issue (torchvision's metadata and the
papers), independently of the registry's own metadata, which is checked too."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from svertka.analysis import analyze
from svertka.errors import UnknownModelError, UsageError
from svertka.zoo import create_model, get_entry, list_models, registry

EXACT = {  # name: (params, MACs at the default input)
    "alexnet": (61_100_840, 714_188_480),
    "vgg11": (132_863_336, 7_609_090_048), "vgg11_bn": (132_868_840, 7_609_090_048),
    "vgg13": (133_047_848, 11_308_466_176), "vgg13_bn": (133_053_736, 11_308_466_176),
    "vgg16": (138_357_544, 15_470_264_320), "vgg16_bn": (138_365_992, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464), "vgg19_bn": (143_678_248, 19_632_062_464),
    "googlenet": (6_624_904, 1_498_376_192),
    "resnet18": (11_689_512, 1_814_073_344), "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 4_089_184_256), "resnet101": (44_549_160, 7_801_405_440),
    "resnet152": (60_192_808, 11_513_626_624),
    "mobilenet_v2": (3_504_872, 300_774_272),
    "efficientnet_b0": (5_288_548, 385_814_752), "efficientnet_b1": (7_794_184, 686_802_832),
    "efficientnet_b2": (9_109_994, 1_087_529_456), "efficientnet_b3": (12_233_232, 1_827_141_392),
    "efficientnet_b4": (19_341_616, 4_393_771_024), "efficientnet_b5": (30_389_784, 10_266_384_752),
    "efficientnet_b6": (43_040_704, 19_067_593_536), "efficientnet_b7": (66_347_960, 37_745_884_192),
    "lenet5": (61_706, 416_520),
    "mobilenet_v1": (4_231_976, 568_740_352),
    "googlenet_2014": (6_998_552, 1_582_671_872),
    "lenet5_1998": (60_000, None),
    "alexnet_2012": (60_965_224, None),
    # the training nets; MACs by hand, e.g. cnn2: 26²·32·9 + 24²·64·32·9 + 9,216·128 + 128·10
    "cnn2": (1_199_882, 11_992_448),
    "vgg_fm": (288_170, 29_128_448), "vgg_fm_small": (72_666, 7_338_880),
}
INPUT = {"efficientnet_b1": 240, "efficientnet_b2": 288, "efficientnet_b3": 300,
         "efficientnet_b4": 380, "efficientnet_b5": 456, "efficientnet_b6": 528,
         "efficientnet_b7": 600, "lenet5": 28, "lenet5_1998": 32, "alexnet_2012": 227,
         "cnn2": 28, "vgg_fm": 28, "vgg_fm_small": 28}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_params_and_macs(name):
    a = analyze(create_model(name))
    params, macs = EXACT[name]
    assert a.params == params
    if macs is not None:
        assert a.macs == macs
    assert a.input_shape[1] == INPUT.get(name, 224)


@pytest.mark.parametrize("name,gmacs", [("resnet50_v1", 3.858), ("resnet101_v1", 7.570),
                                        ("resnet152_v1", 11.282)])
def test_resnet_v1_macs_match_paper_table1(name, gmacs):
    a = analyze(create_model(name))
    assert round(a.macs / 1e9, 3) == gmacs
    # stride moves between convs; the parameters do not change
    assert a.params == analyze(create_model(name.replace("_v1", ""))).params


@pytest.mark.parametrize("name,paper", [("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66),
                                        ("resnet56", 0.85), ("resnet110", 1.7)])
def test_cifar_resnets_match_paper(name, paper):
    a = analyze(create_model(name))
    assert a.input_shape == (3, 32, 32) and a.output_shape == (10,)
    assert round(a.params / 1e6, 2 if paper < 1 else 1) == paper


@pytest.mark.parametrize("name,macs_m,params_m", [("mobilenet_v1_075", 325, 2.6),
                                                  ("mobilenet_v1_050", 149, 1.3),
                                                  ("mobilenet_v1_025", 41, 0.5)])
def test_mobilenet_v1_width_multipliers_match_table6(name, macs_m, params_m):
    a = analyze(create_model(name))
    assert round(a.macs / 1e6) == macs_m
    assert round(a.params / 1e6, 1) == params_m


def test_mobilenet_v1_conv_and_fc_alone():
    a = analyze(create_model("mobilenet_v1"))
    bn = sum(leaf.params for leaf in a.leaves if leaf.type == "BatchNorm2d")
    assert a.params - bn == 4_210_088


def test_lenet5_1998_layer_breakdown():
    a = analyze(create_model("lenet5_1998"))
    by_name = {layer.name: layer.params for layer in a.layers}
    assert [by_name[k] for k in ("c1", "s2", "c3", "s4", "c5", "f6")] == \
        [156, 12, 1_516, 32, 48_120, 10_164]
    assert by_name["output"] == 0 and a.buffers == 840  # fixed RBF centres


def test_cnn2_layers_match_the_keras_summary():
    # keras/examples/mnist_cnn.py, model.summary(): conv2d 320, conv2d_1 18,496, dense 1,179,776,
    # dense_1 1,290
    a = analyze(create_model("cnn2"))
    assert [leaf.params for leaf in a.leaves if leaf.params] == [320, 18_496, 1_179_776, 1_290]
    assert a.input_shape == (1, 28, 28) and a.output_shape == (10,)


@pytest.mark.parametrize("name", ["cnn2", "vgg_fm", "vgg_fm_small"])
def test_training_nets_default_to_fashion_mnist(name):
    net = create_model(name)
    assert (net.mean, net.std, net.num_classes) == ((0.2860,), (0.3530,), 10)
    rgb = create_model(name, in_chans=3)
    assert rgb.mean == (0.2860,) * 3 and rgb.std == (0.3530,) * 3


def test_googlenet_with_aux_heads():
    from svertka.zoo.googlenet import aux_heads

    total = analyze(create_model("googlenet")).params
    for node, shape in aux_heads().values():
        total += analyze(node, shape).params
    assert total == 13_004_888


def test_lecture_numbers():
    """LeNet ~60k, AlexNet 60M, VGG-16 138M, ResNet ~26M, EfficientNet 4-66M."""
    p = lambda n: analyze(create_model(n)).params  # noqa: E731
    assert round(p("lenet5_1998") / 1e3) == 60
    assert round(p("alexnet_2012") / 1e6) == 61 and round(p("alexnet") / 1e6) == 61
    assert round(p("vgg16") / 1e6) == 138
    assert round(p("resnet50") / 1e6) == 26
    assert round(p("efficientnet_b0") / 1e6) == 5 and round(p("efficientnet_b7") / 1e6) == 66


@pytest.mark.parametrize("name", list_models())
def test_registry_metadata_agrees(name):
    ref = get_entry(name).reference
    a = analyze(create_model(name))
    if ref.exact:
        assert ref.params is None or a.params == ref.params
        assert ref.macs is None or a.macs == ref.macs
    else:  # a paper's rounded figure: within the rounding of its last digit (~5%)
        assert abs(a.params - ref.params) / ref.params < 0.08
        assert ref.macs is None or abs(a.macs - ref.macs) / ref.macs < 0.03


def test_num_classes_and_in_chans():
    a = analyze(create_model("resnet18", num_classes=10, in_chans=1))
    assert a.output_shape == (10,)
    assert a.params == 11_689_512 - 512 * 990 - 990 - 2 * 64 * 49


def test_list_models_wildcards():
    assert list_models("resnet1*") == ["resnet18", "resnet101", "resnet152", "resnet101_v1",
                                       "resnet152_v1", "resnet110"]
    assert set(list_models("vgg16*")) == {"vgg16", "vgg16_bn"}
    assert list_models("vgg_fm*") == ["vgg_fm", "vgg_fm_small"]
    assert len(list_models()) >= 43


def test_each_name_is_written_out_in_the_source():
    """timm style, greppable: model X is built by a decorated `def X(` in zoo/, never a name
    made up in a loop."""
    src = "".join(p.read_text() for p in Path(registry.__file__).parent.glob("*.py"))
    defined = re.findall(r"^@register_model\((?:[^@]|\n)*?^def (\w+)\(", src, re.M)
    assert sorted(defined) == sorted(list_models())


def test_own_models_join_the_zoo_and_names_register_once():
    # a fresh process, so the user's model is registered before the zoo has loaded
    code = textwrap.dedent("""
        from svertka.spec import Conv2d, Network, seq
        from svertka.zoo import Reference, list_models, register_model

        @register_model(family="mine", input_shape=(1, 8, 8), num_classes=2, description="mine",
                        reference=Reference("me"))
        def my_net(num_classes=2, in_chans=1):
            return Network("my_net", seq(Conv2d(num_classes, 8)), (in_chans, 8, 8), num_classes)

        try:
            register_model(family="vgg", description="again", reference=Reference("me"))(my_net)
        except ValueError as e:
            print(e)
        print(len(list_models()), list_models("my_*"), "vgg16" in list_models())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["model my_net registered twice",
                                f"{len(list_models()) + 1} ['my_net'] True"]


def test_unknown_model_suggests():
    with pytest.raises(UnknownModelError, match="did you mean resnet18"):
        create_model("resnet81")


def test_bad_option():
    with pytest.raises(UsageError):
        create_model("resnet18", num_classes=0)
