"""The 2D error breakdown: known maps on the real hand model, and the shipped network end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pytorch3d.transforms import axis_angle_to_matrix, matrix_to_axis_angle

from smhr_core.checkpoint import load_checkpoint
from smhr_core.hand_model import HandModel
from smhr_core.predictor import DEFAULT_CHECKPOINT
from training import sample as S
from training.cli import main
from training.config import DataConfig
from training.data_source import build_dataset, write_synthetic_scenes
from training.error_breakdown import VARIANTS, error_breakdown, hand_errors

R = 64
"""The input side of the conftest's `exact_scene` maps."""
W = R // 4
SceneBuilder = Callable[..., tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]
CELLS = [[(5, 6), (10, 9)], [(8, 8)]]
RIGHTS = [[True, False], [False]]


def _set(outputs: dict, sample: int, slot: int, first: int, values: list[float]) -> None:
    """Overwrite the network's values [first, first + len) of one hand of CELLS at its cell."""
    x, y = CELLS[sample][slot]
    offset = 61 if RIGHTS[sample][slot] else 0
    params = outputs["params"].detach().clone()
    params[sample, offset + first : offset + first + len(values), y, x] = torch.tensor(values)
    outputs["params"] = params


def test_exact_maps_have_no_error_anywhere(exact_scene: SceneBuilder, hand_model) -> None:
    outputs, batch = exact_scene(CELLS, RIGHTS)
    values = hand_errors(outputs, batch, hand_model, R)
    assert values["predicted"].shape == (3,)  # the three labelled hands, the empty slot skipped
    for name in (*VARIANTS, "in_plane_error_deg", "wrist_error_box_pct", "wrist_depth_error_pct"):
        assert values[name].abs().max().item() == pytest.approx(0.0, abs=0.05), name
    # acos near 1 is steep: float32 rounding of an exact rotation gives up to ~0.05 deg.
    for name in ("orientation_error_deg", "palm_normal_error_deg", "finger_rotation_error_deg"):
        assert values[name].abs().max().item() == pytest.approx(0.0, abs=0.2), name
    assert values["side_correct"].tolist() == [1.0, 1.0, 1.0]
    assert values["facing_correct"].tolist() == [1.0, 1.0, 1.0]


def test_each_variant_removes_the_error_of_its_own_part(
    exact_scene: SceneBuilder, hand_model: HandModel
) -> None:
    outputs, batch = exact_scene(CELLS, RIGHTS)
    # Hand 0 (right): a wrong global orientation. Hand 1 (left): wrong finger angles.
    # Hand 2 (left): 0.3 m too far away.
    _set(outputs, 0, 0, 0, [0.4, -0.3, 2.0])
    _set(outputs, 0, 1, 3, [0.6] * 45)
    _set(outputs, 1, 0, 60, [float(outputs["params"][1, 60, 8, 8]) + 0.3])  # camera c
    v = hand_errors(outputs, batch, hand_model, R)

    assert (v["predicted"] > 1.0).all()
    assert v["true_orientation"][0].item() == pytest.approx(0.0, abs=0.05)
    assert v["true_orientation"][1].item() > 1.0
    assert v["true_finger_pose"][1].item() == pytest.approx(0.0, abs=0.05)
    assert v["true_finger_pose"][0].item() > 1.0
    assert v["true_orientation_and_finger_pose"][:2].abs().max().item() < 0.05
    # Moving the hand to the labelled wrist undoes a pure translation error, not the others.
    assert v["true_wrist"][2].item() == pytest.approx(0.0, abs=0.05)
    assert (v["true_wrist"][:2] > 1.0).all()
    assert v["true_wrist_and_orientation"][0].item() == pytest.approx(0.0, abs=0.05)
    # The far hand: tz grows by exactly 0.3 m, and the wrist's depth with it.
    true_depth = batch[S.JOINTS_3D][1, 0, 0, 2].item()
    assert v["wrist_depth_error_pct"][2].item() == pytest.approx(100 * 0.3 / true_depth, rel=1e-3)
    assert v["wrist_depth_error_pct"][:2].abs().max().item() < 0.05
    # Finger error: each joint of hand 1 is at (0.6, 0.6, 0.6) against its label.
    labelled = batch[S.MANO_POSE][0, 1, 3:].reshape(15, 3).double()
    relative = axis_angle_to_matrix(torch.full((15, 3), 0.6, dtype=torch.float64)).transpose(
        -1, -2
    ) @ axis_angle_to_matrix(labelled)
    angles = matrix_to_axis_angle(relative).norm(dim=-1)
    expected = math.degrees(float(angles.mean()))
    assert v["finger_rotation_error_deg"][1].item() == pytest.approx(expected, abs=0.1)
    assert expected > 40.0
    assert v["finger_rotation_error_deg"][[0, 2]].abs().max().item() < 0.2


def test_the_fit_to_the_true_joints_removes_most_of_every_error_but_not_all(
    exact_scene: SceneBuilder, hand_model: HandModel
) -> None:
    outputs, batch = exact_scene(CELLS, RIGHTS)
    _set(outputs, 0, 0, 0, [0.4, -0.3, 2.0])  # wrong orientation
    _set(outputs, 0, 1, 3, [0.3] * 45)  # wrong fingers
    _set(outputs, 1, 0, 60, [float(outputs["params"][1, 60, 8, 8]) + 0.3])  # 0.3 m too far
    v = hand_errors(outputs, batch, hand_model, R)
    assert (v["predicted"] > 10.0).all()
    # The fit meets labelled joints far better than the network's hand does, but its priors
    # (the network's orientation, fingers and depth) keep it from meeting them exactly.
    assert (v["fitted_to_true_joints"] < 0.3 * v["predicted"]).all()
    assert (v["fitted_to_true_joints"] > 0.5).all()


def test_side_and_facing_read_the_handmap_and_the_palm(
    exact_scene: SceneBuilder, hand_model: HandModel
) -> None:
    outputs, batch = exact_scene(CELLS, RIGHTS)
    outputs["handmap"] = outputs["handmap"].flip(1)  # every centre says the other side
    # Hand 0 turned by pi about the camera's y axis: the camera now sees its other side.
    orient = outputs["params"][0, 61:64, 6, 5].detach()
    half_turn = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    turned = matrix_to_axis_angle(half_turn @ axis_angle_to_matrix(orient))
    _set(outputs, 0, 0, 0, turned.tolist())
    v = hand_errors(outputs, batch, hand_model, R)
    assert v["side_correct"].tolist() == [0.0, 0.0, 0.0]
    assert v["facing_correct"].tolist() == [0.0, 1.0, 1.0]
    # A half turn: 180 degrees of 3D orientation error; the palm normal n turns to H n.
    assert v["orientation_error_deg"][0].item() == pytest.approx(180.0, abs=0.5)
    joints = batch[S.JOINTS_3D][0, 0].float()
    normal = torch.linalg.cross(joints[5] - joints[0], joints[17] - joints[0])
    cosine = (normal @ half_turn @ normal) / normal.dot(normal)
    expected = math.degrees(math.acos(float(cosine)))
    assert v["palm_normal_error_deg"][0].item() == pytest.approx(expected, abs=0.5)
    assert expected > 30.0
    assert v["orientation_error_deg"][1:].abs().max().item() < 0.2


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_synthetic_scenes(root, count=3, seed=7, resolution=256, max_hands=4, supersampling=1)
    return root


def test_shipped_network_end_to_end_and_cli(scenes: Path, hand_model, tmp_path: Path) -> None:
    torch.manual_seed(0)
    loaded = load_checkpoint(DEFAULT_CHECKPOINT)
    dataset = build_dataset(DataConfig(dataset="scenes", root=str(scenes)), 256, train=False)
    labelled = sum(int(dataset[i][S.VALID].sum()) for i in range(len(dataset)))
    result = error_breakdown(loaded.model, hand_model, dataset, 256, batch_size=2)
    assert result.hands == labelled > 0
    assert 0.0 <= result.side_accuracy <= 1.0 and 0.0 <= result.facing_accuracy <= 1.0
    for name in VARIANTS:
        error = getattr(result, name)
        assert 0.0 < error.mean < 200.0 and 0.0 < error.median < 200.0, name
    assert result.predicted.mean > 1.0  # a trained network, not a copy of the labels

    out = tmp_path / "breakdown.json"
    args = ["breakdown", "--checkpoint", str(DEFAULT_CHECKPOINT), "--data", "scenes"]
    assert main([*args, "--root", str(scenes), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["hands"] == result.hands
    assert written["predicted"]["mean"] == pytest.approx(result.predicted.mean, rel=1e-5)
    assert written["side_accuracy"] == pytest.approx(result.side_accuracy)


def test_cli_refuses_a_missing_folder_and_reads_only_max_images(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["breakdown", "--checkpoint", str(DEFAULT_CHECKPOINT), "--data", "scenes"]
    assert main([*args, "--root", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*args, "--root", str(scenes), "--max-images", "1"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    dataset = build_dataset(DataConfig(dataset="scenes", root=str(scenes)), 256, train=False)
    assert first_line == f"hands read at their labelled centres: {int(dataset[0][S.VALID].sum())}"
