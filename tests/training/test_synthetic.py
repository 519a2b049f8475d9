"""Synthetic scenes: determinism by seed, label consistency (keypoints, masks, centres, MANO),
and the scene folder format."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from smhr_core.camera import project
from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training import sample as S
from training.synthetic import (
    FOREARM,
    FOREARM_RINGS,
    Scene,
    SceneConfig,
    SceneFolder,
    SceneGenerator,
    SyntheticScenes,
    forearm_faces,
    forearm_vertices,
    load_scene,
    main,
    random_albedo,
    random_background,
    random_rotation,
    scene_paths,
    skin_regions,
    viewing_rotation,
    wrist_loop,
    write_scenes,
)

R = 128
CONFIG = SceneConfig(resolution=R, min_hands=2, max_hands=4, hand_size=(0.3, 0.45))


@pytest.fixture(scope="module")
def hand_model() -> HandModel:
    return HandModel.from_directory(open_hand_directory())


@pytest.fixture(scope="module")
def generator(hand_model: HandModel) -> SceneGenerator:
    return SceneGenerator(CONFIG, hand_model)


@pytest.fixture(scope="module")
def scenes(generator: SceneGenerator) -> list[Scene]:
    return [generator.scene(seed) for seed in range(3)]


def test_same_seed_same_scene(generator: SceneGenerator, scenes: list[Scene]) -> None:
    again = generator.scene(2)
    assert np.array_equal(again.image_bgr, scenes[2].image_bgr)
    assert np.array_equal(again.hand_index, scenes[2].hand_index)
    for a, b in zip(again.hands, scenes[2].hands, strict=True):
        assert np.array_equal(a.vertices_m, b.vertices_m) and a.is_right == b.is_right
    assert not np.array_equal(scenes[0].image_bgr, scenes[1].image_bgr)


def test_softened_samples_keep_their_labels(hand_model: HandModel, scenes: list[Scene]) -> None:
    """Softening changes only the image, reproducibly; at probability 0 samples are as before."""
    always = SyntheticScenes(3, config=CONFIG, hand_model=hand_model, soften_probability=1.0)
    never = SyntheticScenes(3, config=CONFIG, hand_model=hand_model, soften_probability=0.0)
    for index in range(3):
        plain = scenes[index].to_sample()
        torch.testing.assert_close(never[index], plain)
        soft = always[index]
        assert soft.keys() == plain.keys()
        for key in plain:
            if key not in (S.IMAGE, S.IMAGE_RGB):
                torch.testing.assert_close(soft[key], plain[key])
        difference = (soft[S.IMAGE_RGB].float() - plain[S.IMAGE_RGB].float()).abs().mean()
        assert difference > 0.005  # images in [0, 1]
        torch.testing.assert_close(always[index], soft)
    with pytest.raises(ValueError, match=r"soften_probability must be in \[0, 1\]"):
        SyntheticScenes(1, config=CONFIG, hand_model=hand_model, soften_probability=1.5)


def test_dataset_index_is_base_seed_plus_index(hand_model: HandModel, scenes: list[Scene]) -> None:
    dataset = SyntheticScenes(2, base_seed=1, config=CONFIG, hand_model=hand_model)
    assert len(dataset) == 2
    item = dataset[1]
    torch.testing.assert_close(item, scenes[2].to_sample())
    with pytest.raises(IndexError, match="out of range"):
        dataset.scene(2)
    batch = default_collate([item, scenes[0].to_sample()])
    assert batch[S.IMAGE].shape == (2, 3, R, R)


def test_scene_contents(scenes: list[Scene]) -> None:
    sides = set()
    for scene in scenes:
        assert scene.image_bgr.shape == (R, R, 3) and scene.image_bgr.dtype == np.uint8
        assert 2 <= len(scene.hands) <= 4
        assert set(range(-1, len(scene.hands))) <= set(np.unique(scene.hand_index))
        assert set(np.unique(scene.hand_index)) <= set(range(FOREARM, len(scene.hands)))
        sides.update(hand.is_right for hand in scene.hands)
        # Hands differ from the background: the image inside the mask is not the backdrop.
        assert scene.mask.sum() > 0.03 * R * R
    assert sides == {True, False}
    assert any((scene.hand_index == FOREARM).any() for scene in scenes)
    assert all(scene.mask[scene.hand_index == FOREARM].sum() == 0 for scene in scenes)


def test_keypoints_are_projected_joints_on_the_rendered_hands(scenes: list[Scene]) -> None:
    inside, total = 0, 0
    for scene in scenes:
        for number, hand in enumerate(scene.hands):
            np.testing.assert_allclose(
                project(hand.joints_m, scene.camera_matrix), hand.keypoints_px, atol=1e-3
            )
            own = (scene.hand_index == number).astype(np.uint8)
            own = cv2.dilate(own, np.ones((5, 5), np.uint8))
            # Occluded keypoints lie on other hands or on a forearm (the wrist on its own).
            drawn = (scene.hand_index != -1).astype(np.uint8)
            union = cv2.dilate(drawn, np.ones((5, 5), np.uint8))
            uv = np.floor(hand.keypoints_px).astype(int)
            assert union[uv[:, 1], uv[:, 0]].all()
            inside += int(own[uv[:, 1], uv[:, 0]].sum())
            total += len(uv)
    assert inside / total > 0.85


def test_labels_reproduce_through_the_hand_model(
    hand_model: HandModel, scenes: list[Scene]
) -> None:
    hands = [hand for scene in scenes for hand in scene.hands]
    with torch.no_grad():
        out = hand_model(
            torch.tensor(np.stack([h.global_orient for h in hands])),
            torch.tensor(np.stack([h.hand_pose for h in hands])),
            torch.tensor(np.stack([h.betas for h in hands])),
            torch.tensor(np.stack([h.translation_m for h in hands])),
            torch.tensor([h.is_right for h in hands]),
        )
    np.testing.assert_allclose(out.joints.numpy(), np.stack([h.joints_m for h in hands]), atol=1e-5)
    np.testing.assert_allclose(
        out.vertices.numpy(), np.stack([h.vertices_m for h in hands]), atol=1e-5
    )


def test_samples_centres_fall_on_the_hands(scenes: list[Scene]) -> None:
    width = R // 4
    for scene in scenes:
        sample = scene.to_sample()
        S.validate_sample(sample)
        assert int(sample[S.VALID].sum()) == len(scene.hands)
        assert sample[S.HAS_MASK] == 1 and sample[S.HAS_3D].sum() == len(scene.hands)
        near_hand = cv2.dilate(scene.mask.astype(np.uint8), np.ones((13, 13), np.uint8))
        for slot, hand in enumerate(scene.hands):
            cell = int(sample[S.IND][slot])
            u, v = (cell % width) * 4 + 2, (cell // width) * 4 + 2
            assert near_hand[v, u], f"seed {scene.seed} hand {slot}: centre off the hand"
            assert sample[S.IS_RIGHT][slot] == float(hand.is_right)
            assert sample[S.HANDMAP][int(hand.is_right)].reshape(-1)[cell] == 1.0


def test_backgrounds_vary() -> None:
    images = [random_background(np.random.default_rng(seed), 64) for seed in range(12)]
    means = np.array([image.reshape(-1, 3).mean(axis=0) for image in images])
    assert means.std(axis=0).min() > 10  # colours differ from image to image
    assert min(float(image.std()) for image in images) < max(float(i.std()) for i in images) / 2


def test_backgrounds_drawn_at_a_scale_are_resized_to_the_side() -> None:
    for seed in range(4):
        native = random_background(np.random.default_rng(seed), 64)
        assert np.array_equal(random_background(np.random.default_rng(seed), 64, 1.0), native)
        large = random_background(np.random.default_rng(seed), 128)
        shrunk = cv2.resize(large, (64, 64), interpolation=cv2.INTER_AREA)
        assert np.array_equal(random_background(np.random.default_rng(seed), 64, 2.0), shrunk)
        small = random_background(np.random.default_rng(seed), 32)
        enlarged = cv2.resize(small, (64, 64), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(random_background(np.random.default_rng(seed), 64, 0.5), enlarged)


def test_background_scale_draws_each_scene_at_a_scale_in_its_range(
    hand_model: HandModel,
) -> None:
    with pytest.raises(ValueError, match="background_scale"):
        SceneConfig(resolution=R, background_scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="background_scale"):
        SceneConfig(resolution=R, background_scale=(0.1, 1.0))

    def roughness(scale: tuple[float, float]) -> float:
        config = SceneConfig(resolution=R, min_hands=1, max_hands=1, background_scale=scale)
        generator = SceneGenerator(config, hand_model)
        values = []
        for seed in range(6):
            scene = generator.scene(seed)
            edges = np.abs(cv2.Laplacian(scene.image_bgr.astype(np.float32), cv2.CV_32F))
            values.append(float(edges[scene.hand_index == -1].mean()))
        return float(np.median(values))

    # Drawn at half the side and enlarged, backgrounds lose their pixel-scale noise and detail.
    assert roughness((0.5, 0.5)) < 0.6 * roughness((1.0, 1.0))


def test_scene_folder_round_trip_and_errors(
    tmp_path, hand_model: HandModel, scenes: list[Scene]
) -> None:
    folder = write_scenes(tmp_path / "eval", 2, base_seed=0, config=CONFIG, hand_model=hand_model)
    loaded = load_scene(folder, 1)
    assert np.array_equal(loaded.image_bgr, scenes[1].image_bgr)
    assert np.array_equal(loaded.hand_index, scenes[1].hand_index)  # forearms included
    np.testing.assert_allclose(loaded.hands[0].vertices_m, scenes[1].hands[0].vertices_m)
    dataset = SceneFolder(folder)
    assert len(dataset) == 2
    torch.testing.assert_close(dataset[1], scenes[1].to_sample())
    label = json.loads(scene_paths(folder, 0)[2].read_text())
    assert label["format"] == "smhr-synthetic-scene/1" and label["seed"] == 0
    label_path = scene_paths(folder, 0)[2]
    broken = dict(label, hands=[dict(label["hands"][0], joints_m=[[0.0, 0.0, 0.0]])])
    label_path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"000000\.json hand 0: 'joints_m' has shape"):
        load_scene(folder, 0)
    label_path.write_text("{not json")
    with pytest.raises(ValueError, match=r"000000\.json: not valid JSON"):
        load_scene(folder, 0)
    scene_paths(folder, 1)[0].unlink()
    with pytest.raises(FileNotFoundError, match=r"scene 1: missing .*000001\.png"):
        load_scene(folder, 1)
    with pytest.raises(FileNotFoundError, match="no scenes"):
        SceneFolder(tmp_path / "empty")


def test_forearm_continues_the_wrist_away_from_the_fingers(
    hand_model: HandModel, scenes: list[Scene]
) -> None:
    loop = wrist_loop(np.array(hand_model.faces(True)))
    assert len(loop) >= 8
    np.testing.assert_array_equal(np.sort(loop), np.sort(wrist_loop(hand_model.faces(False))))
    hand = scenes[0].hands[0]
    arm = forearm_vertices(hand.vertices_m, hand.joints_m, loop, 0.25, 0.2)
    faces = forearm_faces(len(loop))
    assert arm.shape == ((FOREARM_RINGS + 1) * len(loop) + 1, 3)
    assert faces.min() == 0 and faces.max() == len(arm) - 1
    np.testing.assert_allclose(arm[: len(loop)], hand.vertices_m[loop])  # no gap at the wrist
    knuckle = hand.joints_m[9]
    wrist_centre = hand.vertices_m[loop].mean(axis=0)
    assert np.linalg.norm(arm[-1] - knuckle) > np.linalg.norm(wrist_centre - knuckle) + 0.2
    # Every edge of the closed tube is shared by exactly two of its triangles, except the
    # wrist loop, which the hand's faces close.
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 1).sum() == len(loop) and set(counts) <= {1, 2}


@pytest.mark.parametrize("is_right", [True, False])
def test_palm_and_nails_are_lighter_than_the_back(hand_model: HandModel, is_right: bool) -> None:
    regions = skin_regions(hand_model, is_right)
    out = hand_model(
        torch.zeros(1, 3),
        torch.zeros(1, 45),
        torch.zeros(1, 10),
        torch.zeros(1, 3),
        torch.tensor([is_right]),
    )
    vertices = out.vertices[0].numpy()
    tips = out.joints[0, [4, 8, 12, 16, 20]].numpy()
    palm_centre = out.joints[0, [0, 5, 9, 13, 17]].numpy().mean(axis=0)
    # The palm faces -y in the rest pose: the palmar side is the lower half of the palm.
    near_palm = np.linalg.norm(vertices[:, [0, 2]] - palm_centre[[0, 2]], axis=1) < 0.02
    below = near_palm & (vertices[:, 1] < palm_centre[1])
    above = near_palm & (vertices[:, 1] > palm_centre[1])
    assert below.sum() > 5 and above.sum() > 5
    assert regions.palmar[below].mean() > 0.9 and regions.palmar[above].mean() < 0.1
    # One nail at every fingertip, on the back of the finger, and nowhere else.
    nails = regions.nail > 0.5
    nearest_tip = np.linalg.norm(vertices[:, None] - tips[None], axis=2).argmin(axis=1)
    assert set(nearest_tip[nails]) == {0, 1, 2, 3, 4}
    assert (vertices[nails, 1] > tips[nearest_tip[nails], 1] - 0.002).all()
    assert nails.sum() < 0.1 * len(vertices)
    albedo = random_albedo(np.random.default_rng(0), regions)
    brightness = albedo.sum(axis=1)
    assert brightness[below].mean() > brightness[above].mean() * 1.1
    assert brightness[nails].mean() > brightness[above].mean() * 1.1


def test_viewing_rotation_faces_the_camera_within_the_tilt() -> None:
    rng = np.random.default_rng(0)
    max_tilt = math.radians(70.0)
    rotations = [viewing_rotation(rng, max_tilt) for _ in range(400)]
    for rotation in rotations:
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
    palm_normals = np.array([r @ np.array([0.0, -1.0, 0.0]) for r in rotations])
    tilt = np.degrees(np.arccos(np.abs(palm_normals[:, 2])))
    assert tilt.max() <= 70.0 + 1e-6 and tilt.max() > 60.0
    # Palm towards the camera (-z) and back towards it are equally likely.
    assert 0.4 < (palm_normals[:, 2] < 0).mean() < 0.6
    # Fingers point every way in the image.
    fingers = np.array([r @ np.array([-1.0, 0.0, 0.0]) for r in rotations])
    angles = np.arctan2(fingers[:, 1], fingers[:, 0])
    assert np.histogram(angles, bins=8, range=(-math.pi, math.pi))[0].min() > 20
    # Edge-on hands come only from the uniform orientations.
    uniform = np.array([r @ np.array([0.0, -1.0, 0.0]) for r in map(random_rotation, [rng] * 400)])
    assert (np.abs(uniform[:, 2]) < math.cos(max_tilt)).mean() > 0.25


def test_command_line_writes_scenes(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scenes"
    assert main(["--out", str(out), "--count", "1", "--resolution", "96", "--seed", "7"]) == 0
    assert "wrote 1 scenes" in capsys.readouterr().out
    scene = load_scene(out, 0)
    assert scene.image_bgr.shape == (96, 96, 3) and scene.seed == 7 and scene.hands
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--count", "1", "--resolution", "90"])
    assert "multiple of 4" in capsys.readouterr().err
