"""Checkpoint loading/saving against the release key list, and every error path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from smhr_core.checkpoint import (
    IGNORED_PREFIXES,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from smhr_core.config import RELEASE_MULTI_HAND, ModelConfig
from smhr_core.network import SMHRNet

KEYS_FILE = Path(__file__).resolve().parents[1] / "data" / "official_keys_multi.txt"
SMALL = ModelConfig(backbone="efficientnet_lite0", input_resolution=64, heads=("hm", "params"))


def official_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        key, shape = line.split(" ", 1)
        inner = shape.strip().strip("()")
        shapes[key] = tuple(int(part) for part in inner.split(",") if part.strip())
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(0, 10_000, shape, generator=generator)
        else:
            state[key] = torch.randn(shape, generator=generator)
    return state


def small_release_file(tmp_path: Path, name: str = "small.pth", **edits) -> tuple[Path, dict]:
    """A release-layout file (no smhr_meta) of the small network, plus ignored release keys."""
    torch.manual_seed(0)
    state = dict(SMHRNet(SMALL).state_dict())
    state["uv_head.conv.weight"] = torch.randn(21, 64, 3, 3)
    state["p2.weight"] = torch.randn(256, 256, 3, 3)
    for key, value in edits.items():
        key = key.replace("__", ".")
        if value is None:
            del state[key]
        else:
            state[key] = value
    path = tmp_path / name
    torch.save({"epoch": 5, "state_dict": state}, path)
    return path, state


def test_release_multi_hand_layout_loads_and_round_trips(tmp_path: Path) -> None:
    shapes = official_shapes()
    assert all(shapes[k] == () for k in shapes if k.endswith("num_batches_tracked"))
    state = random_state(shapes, seed=1)
    release = tmp_path / "Multi_pho.pth"
    torch.save({"epoch": 7, "state_dict": state}, release)

    loaded = load_checkpoint(release)
    assert loaded.config == RELEASE_MULTI_HAND
    assert loaded.report.layout == "release"
    assert loaded.report.config_source == "inferred"
    assert loaded.report.epoch == 7
    assert not loaded.report.stripped_prefix
    assert not loaded.model.training
    expected_ignored = sorted(k for k in shapes if k.startswith(IGNORED_PREFIXES))
    assert list(loaded.report.ignored_keys) == expected_ignored
    model_state = loaded.model.state_dict()
    assert loaded.report.used_keys == len(model_state) == len(shapes) - len(expected_ignored)
    for key, value in model_state.items():
        assert torch.equal(value, state[key]), key

    # save_checkpoint writes model.state_dict(), whose names are exactly these release keys.
    assert set(model_state) == set(shapes) - set(expected_ignored)


def test_module_prefix_is_stripped(tmp_path: Path) -> None:
    _, state = small_release_file(tmp_path)
    path = tmp_path / "dp.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_checkpoint(path)
    assert loaded.report.stripped_prefix
    assert loaded.config == ModelConfig(
        backbone="efficientnet_lite0", input_resolution=224, heads=("hm", "params")
    )
    assert set(loaded.report.ignored_keys) == {"uv_head.conv.weight", "p2.weight"}
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_save_load_round_trip_is_identical(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = SMHRNet(SMALL).eval()
    meta = {"commit": "abc123", "training": {"lr": 1e-4, "tags": ["a", "b"]}}
    path = save_checkpoint(tmp_path / "s.pth", source, SMALL, epoch=4, meta=meta)
    loaded = load_checkpoint(path)
    assert loaded.config == SMALL
    assert loaded.report.layout == "smhr/1"
    assert loaded.report.config_source == "file"
    assert loaded.report.ignored_keys == ()
    assert loaded.report.epoch == 4
    assert loaded.meta == meta
    source_state = source.state_dict()
    assert loaded.report.used_keys == len(source_state)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, source_state[key]), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = source(x), loaded.model(x)
    for name in SMALL.heads:
        assert torch.equal(a[name], b[name])


def test_caller_config_overrides_inference(tmp_path: Path) -> None:
    path, _ = small_release_file(tmp_path)
    config = ModelConfig(
        backbone="efficientnet_lite0", input_resolution=384, heads=("hm", "params")
    )
    loaded = load_checkpoint(path, config=config)
    assert loaded.config == config
    assert loaded.report.config_source == "caller"


def test_missing_key_is_named(tmp_path: Path) -> None:
    path, _ = small_release_file(tmp_path, params__2__bias=None)
    with pytest.raises(CheckpointError, match=r"missing key\(s\): params\.2\.bias") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    path, _ = small_release_file(tmp_path, hm__2__weight=torch.zeros(3, 256, 1, 1))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "hm.2.weight: file (3, 256, 1, 1) vs network (1, 256, 1, 1)" in message


def test_unexpected_key_is_an_error(tmp_path: Path) -> None:
    path, _ = small_release_file(tmp_path, extra__weight=torch.zeros(3))
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): extra\.weight"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "edits",
    [
        {"p3__weight": torch.zeros(256, 512, 3, 3)},
        {"mean_theta": torch.zeros(1, 122, 1, 1)},
    ],
)
def test_2022_layout_is_refused(tmp_path: Path, edits: dict) -> None:
    path, _ = small_release_file(tmp_path, **edits)
    with pytest.raises(CheckpointError, match="2022 stride-8"):
        load_checkpoint(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)
    text = tmp_path / "text.pth"
    text.write_text("hello, not a checkpoint")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    good, _ = small_release_file(tmp_path)
    truncated = tmp_path / "truncated.pth"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for bad in (text, empty, truncated):
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as info:
            load_checkpoint(bad)
        assert str(bad) in str(info.value)


class _MakesDirectoryWhenUnpickled:
    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "was_run"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _MakesDirectoryWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_checkpoint(path)
    assert "mkdir" in str(info.value)
    assert not marker.exists()


def test_wrong_top_level_content(tmp_path: Path) -> None:
    no_state = tmp_path / "no_state.pth"
    torch.save({"epoch": 1, "model": {}}, no_state)
    with pytest.raises(CheckpointError, match=r"no 'state_dict' entry.*epoch, model"):
        load_checkpoint(no_state)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], a_list)
    with pytest.raises(CheckpointError, match="found a list"):
        load_checkpoint(a_list)
    bad_meta = tmp_path / "meta.pth"
    torch.save({"state_dict": {}, "smhr_meta": {"format": "smhr/9"}}, bad_meta)
    with pytest.raises(CheckpointError, match="smhr/9"):
        load_checkpoint(bad_meta)


def test_save_validates_and_leaves_no_partial_file(tmp_path: Path) -> None:
    model = SMHRNet(SMALL)
    target = tmp_path / "out" / "ckpt.pth"
    with pytest.raises(CheckpointError, match=r"meta\.when is a object"):
        save_checkpoint(target, model, SMALL, epoch=1, meta={"when": object()})
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(target, model, SMALL, epoch=1, meta={"model": {}})
    other = ModelConfig(backbone="efficientnet_lite0", input_resolution=128, heads=("hm", "params"))
    with pytest.raises(CheckpointError, match="differs from the model"):
        save_checkpoint(target, model, other, epoch=1)
    assert not target.exists()
    save_checkpoint(target, model, SMALL, epoch=1)
    save_checkpoint(target, model, SMALL, epoch=2)
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.pth"]
    assert load_checkpoint(target).report.epoch == 2


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SMHRNet(SMALL)
    optimizer = torch.optim.Adam(model.hm.parameters(), lr=1e-4)
    for param in model.hm.parameters():
        param.grad = torch.randn_like(param)
    optimizer.step()
    path = save_checkpoint(
        tmp_path / "o.pth", model, SMALL, epoch=3, optimizer_state=optimizer.state_dict()
    )
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is not None
    resumed = torch.optim.Adam(loaded.model.hm.parameters(), lr=1e-4)
    resumed.load_state_dict(loaded.optimizer_state)
    first = next(iter(optimizer.state.values()))["exp_avg"]
    assert torch.equal(next(iter(resumed.state.values()))["exp_avg"], first)
