"""`python -m training average`: the uniform average of checkpoints of one network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smhr_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from smhr_core.config import ModelConfig
from smhr_core.network import SMHRNet
from training.checkpoint_average import AVERAGED_FROM, average_checkpoints
from training.cli import main

TINY = ModelConfig(
    backbone="efficientnet_lite0",
    input_resolution=64,
    heads=("hm", "params", "handmap"),
    neck_channels=32,
)


def _checkpoint(path: Path, seed: int, config: ModelConfig = TINY, **meta) -> SMHRNet:
    torch.manual_seed(seed)
    network = SMHRNet(config)
    with torch.no_grad():  # distinct BatchNorm statistics, which are averaged too
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(seed)
    save_checkpoint(path, network, config, epoch=seed, meta={"step": 100 * seed, **meta})
    return network


def test_the_average_of_three_checkpoints(tmp_path: Path, capsys) -> None:
    networks = [
        _checkpoint(tmp_path / f"run{seed}.pth", seed, git_commit=f"{seed}" * 40)
        for seed in (1, 2, 3)
    ]
    out = tmp_path / "soup.pth"
    sources = [str(tmp_path / f"run{seed}.pth") for seed in (1, 2, 3)]
    assert main(["average", "--out", str(out), *sources]) == 0
    assert "average of 3 checkpoints" in capsys.readouterr().out

    soup = load_checkpoint(out)
    assert soup.config == TINY and soup.report.epoch == 3
    states = [n.state_dict() for n in networks]
    checked = 0
    for name, value in soup.model.state_dict().items():
        if value.is_floating_point():
            expected = (states[0][name] + states[1][name] + states[2][name]) / 3
            torch.testing.assert_close(value, expected)
            checked += int(not torch.equal(states[0][name], states[1][name]))
        else:
            assert torch.equal(value, states[2][name])
    assert checked > 50
    assert soup.meta["git_commit"] == "3" * 40 and soup.meta["step"] == 300
    record = soup.meta[AVERAGED_FROM]
    assert [r["file"] for r in record] == ["run1.pth", "run2.pth", "run3.pth"]
    assert [r["step"] for r in record] == [100, 200, 300]
    assert soup.optimizer_state is None


def test_averaging_refuses_different_networks_and_hand_models(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "a.pth", 1, hand_model_id="open_hand/1")
    wider = ModelConfig(
        **{**TINY.to_dict(), "heads": ("hm", "params", "handmap"), "neck_channels": 16}
    )
    _checkpoint(tmp_path / "b.pth", 2, config=wider)
    with pytest.raises(CheckpointError, match=r"a\.pth.*only networks of one configuration"):
        average_checkpoints([tmp_path / "a.pth", tmp_path / "b.pth"], tmp_path / "out.pth")
    _checkpoint(tmp_path / "c.pth", 3, hand_model_id="mano/1")
    with pytest.raises(CheckpointError, match=r"a\.pth.*'open_hand/1'.*'mano/1'"):
        average_checkpoints([tmp_path / "a.pth", tmp_path / "c.pth"], tmp_path / "out.pth")
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([tmp_path / "a.pth"], tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_cli_names_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    _checkpoint(tmp_path / "a.pth", 1)
    code = main(["average", "--out", str(tmp_path / "o.pth"), str(tmp_path / "a.pth"), "nope.pth"])
    assert code == 2
    assert (
        "python -m training average: nope.pth: no such checkpoint file" in capsys.readouterr().err
    )
