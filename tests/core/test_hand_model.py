"""HandModel conventions checked against an independent numpy implementation of MANO's chain."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
import torch

from smhr_core.hand_model import HandModel, HandModelError
from smhr_core.joint_rig import chain_levels
from smhr_core.mano_pickle import load_mano_pickle
from smhr_core.open_hand import MANO_PARENTS, open_hand_directory

PARENTS = [-1, *MANO_PARENTS[1:]]
TIPS = {True: [745, 317, 444, 556, 673], False: [745, 317, 445, 556, 673]}
# FreiHAND order from MANO joints (0-15) and the tips (16-20: thumb, index, middle, ring, pinky).
FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]


def _random_model(rng: np.random.Generator) -> dict:
    """A MANO-format model with random but valid contents (sparse regressor, non-zero posedirs)."""
    v_template = rng.normal(scale=0.04, size=(778, 3))
    regressor = np.zeros((16, 778))
    for j in range(16):
        ids = rng.choice(778, size=12, replace=False)
        regressor[j, ids] = rng.random(12)
    regressor /= regressor.sum(axis=1, keepdims=True)
    weights = rng.random((778, 16)) ** 4
    weights /= weights.sum(axis=1, keepdims=True)
    components, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return {
        "v_template": v_template,
        "f": rng.integers(0, 778, size=(1538, 3)).astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "kintree_table": np.array([MANO_PARENTS, range(16)], dtype=np.int64),
        "weights": weights,
        "posedirs": rng.normal(scale=0.01, size=(778, 3, 135)),
        "shapedirs": rng.normal(scale=0.005, size=(778, 3, 10)),
        "hands_components": components,
        "hands_mean": rng.normal(scale=0.3, size=45),
        "bs_style": "lbs",
    }


def _rodrigues(w: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(w) + 1e-8
    k = w / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def _reference(model, orient, pose, betas, translation, is_right):
    """MANO by hand: shape, pose blend shapes, kinematic chain, skinning, tips, FreiHAND order."""
    regressor = model["J_regressor"]
    regressor = regressor.toarray() if scipy.sparse.issparse(regressor) else regressor
    v_shaped = model["v_template"] + model["shapedirs"] @ betas
    rest_joints = regressor @ v_shaped
    rotations = [_rodrigues(w) for w in np.concatenate([orient, pose]).reshape(16, 3)]
    feature = np.concatenate([(r - np.eye(3)).ravel() for r in rotations[1:]])
    v_posed = v_shaped + model["posedirs"] @ feature
    world = []
    for j in range(16):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        parent = PARENTS[j]
        local[:3, 3] = rest_joints[j] - (rest_joints[parent] if parent >= 0 else 0.0)
        world.append(local if parent < 0 else world[parent] @ local)
    joints = np.array([g[:3, 3] for g in world])
    skin = []
    for j, g in enumerate(world):
        moved = g.copy()
        moved[:3, 3] -= g[:3, :3] @ rest_joints[j]
        skin.append(moved)
    blend = np.einsum("vj,jab->vab", model["weights"], np.array(skin))
    vertices = np.einsum("vab,vb->va", blend[:, :3, :3], v_posed) + blend[:, :3, 3]
    full = np.concatenate([joints, vertices[TIPS[is_right]]])[FREIHAND]
    return vertices + translation, full + translation, rest_joints[0]


def _write(directory, right, left):
    directory.mkdir(parents=True, exist_ok=True)
    for side, data in (("RIGHT", right), ("LEFT", left)):
        (directory / f"MANO_{side}.pkl").write_bytes(pickle.dumps(data, protocol=2))


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    rng = np.random.default_rng(7)
    right, left = _random_model(rng), _random_model(rng)
    directory = tmp_path_factory.mktemp("random_mano")
    _write(directory, right, left)
    return directory, right, left


@pytest.fixture(scope="module")
def open_model():
    return HandModel.from_directory(open_hand_directory())


def _inputs(rng, n):
    return (
        rng.normal(scale=0.8, size=(n, 3)),
        rng.normal(scale=0.5, size=(n, 45)),
        rng.normal(size=(n, 10)),
        rng.normal(scale=0.3, size=(n, 3)) + np.array([0.0, 0.0, 0.6]),
    )


def _run(model, orient, pose, betas, translation, is_right):
    as_tensor = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return model(
        as_tensor(orient), as_tensor(pose), as_tensor(betas), as_tensor(translation),
        torch.tensor(is_right),
    )  # fmt: skip


def test_matches_independent_implementation_mixed_batch(random_models):
    directory, right, left = random_models
    model = HandModel.from_directory(directory)
    rng = np.random.default_rng(11)
    is_right = [True, False, False, True, False]
    orient, pose, betas, translation = _inputs(rng, len(is_right))
    out = _run(model, orient, pose, betas, translation, is_right)
    assert out.vertices.shape == (5, 778, 3)
    assert out.joints.shape == (5, 21, 3)
    assert out.rest_wrist.shape == (5, 3)
    for i, side in enumerate(is_right):
        data = right if side else left
        vertices, joints, rest_wrist = _reference(
            data, orient[i], pose[i], betas[i], translation[i], side
        )
        np.testing.assert_allclose(out.vertices[i].numpy(), vertices, atol=2e-5)
        np.testing.assert_allclose(out.joints[i].numpy(), joints, atol=2e-5)
        np.testing.assert_allclose(out.rest_wrist[i].numpy(), rest_wrist, atol=2e-5)


def test_joints_alone_match_the_independent_implementation(random_models):
    """`joints` (the fit's cheap path, tips posed alone) gives the joints of the full model."""
    directory, right, left = random_models
    model = HandModel.from_directory(directory)
    rng = np.random.default_rng(12)
    is_right = [False, True, True, False]
    orient, pose, betas, translation = _inputs(rng, len(is_right))
    as_tensor = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    joints = model.joints(
        as_tensor(orient), as_tensor(pose), as_tensor(betas), as_tensor(translation),
        torch.tensor(is_right),
    )  # fmt: skip
    assert joints.shape == (4, 21, 3)
    for i, side in enumerate(is_right):
        data = right if side else left
        _, expected, _ = _reference(data, orient[i], pose[i], betas[i], translation[i], side)
        np.testing.assert_allclose(joints[i].numpy(), expected, atol=2e-5)
    full = _run(model, orient, pose, betas, translation, is_right).joints
    np.testing.assert_allclose(joints.numpy(), full.numpy(), atol=1e-6)


def test_joint_rig_poses_many_variants_of_each_hand(random_models):
    """A rig shapes each hand once; K poses of N mixed-side hands match the reference one by one."""
    directory, right, left = random_models
    model = HandModel.from_directory(directory)
    rng = np.random.default_rng(21)
    is_right = [True, False, True]
    n, k = len(is_right), 4
    _, _, betas, _ = _inputs(rng, n)
    orient, pose, _, translation = _inputs(rng, n * k)
    as_tensor = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    rig = model.joint_rig(as_tensor(betas), torch.tensor(is_right))
    joints = rig.pose(
        as_tensor(orient).reshape(n, k, 3),
        as_tensor(pose).reshape(n, k, 45),
        as_tensor(translation).reshape(n, k, 3),
    )
    assert joints.shape == (n, k, 21, 3)
    for i, side in enumerate(is_right):
        data = right if side else left
        for j in range(k):
            row = i * k + j
            _, expected, _ = _reference(
                data, orient[row], pose[row], betas[i], translation[row], side
            )
            np.testing.assert_allclose(joints[i, j].numpy(), expected, atol=2e-5)


def test_chain_levels_group_joints_by_depth():
    assert chain_levels(PARENTS) == [
        ([1, 4, 7, 10, 13], [0, 0, 0, 0, 0]),
        ([2, 5, 8, 11, 14], [1, 4, 7, 10, 13]),
        ([3, 6, 9, 12, 15], [2, 5, 8, 11, 14]),
    ]
    with pytest.raises(ValueError, match="joint 2: parent 3 must precede it"):
        chain_levels([-1, 0, 3, 0])
    with pytest.raises(ValueError, match="joint 0 must be the root"):
        chain_levels([0, 0])


def test_different_kinematic_trees_are_rejected(tmp_path, random_models):
    _, right, left = random_models
    parents = list(MANO_PARENTS)
    parents[15] = 13
    broken = dict(left, kintree_table=np.array([parents, range(16)], dtype=np.int64))
    _write(tmp_path, right, broken)
    with pytest.raises(HandModelError, match="kinematic trees differ"):
        HandModel.from_directory(tmp_path)


def test_conventions_are_distinguishable(random_models):
    """The reference above would catch each wrong convention (so the test above can fail)."""
    directory, right, _ = random_models
    model = HandModel.from_directory(directory)
    rng = np.random.default_rng(5)
    orient, pose, betas, translation = _inputs(rng, 1)
    out = _run(model, orient, pose, betas, translation, [True])
    joints = out.joints[0].numpy()
    vertices = out.vertices[0].numpy()
    # Joints re-regressed from the posed mesh differ from the chain's joints.
    regressed = right["J_regressor"].toarray() @ vertices
    assert np.abs(regressed[0] - joints[0]).max() > 1e-3
    # Adding hands_mean would give another hand.
    with_mean, _, _ = _reference(
        right, orient[0], pose[0] + right["hands_mean"], betas[0], translation[0], True
    )
    assert np.abs(with_mean - vertices).max() > 1e-3
    # The left model's middle tip (445) is not the right's (444) on the same mesh.
    assert np.abs(vertices[444] - vertices[445]).max() > 1e-3


def test_wrist_stays_put_under_global_rotation_and_translation_comes_after(open_model):
    rng = np.random.default_rng(2)
    n = 4
    orient, pose, betas, translation = _inputs(rng, n)
    is_right = [True, False, True, False]
    out = _run(open_model, orient, pose, betas, translation, is_right)
    np.testing.assert_allclose(
        out.joints[:, 0].numpy(), out.rest_wrist.numpy() + translation, atol=1e-6
    )
    no_rotation = _run(open_model, np.zeros((n, 3)), pose, betas, translation, is_right)
    np.testing.assert_allclose(out.rest_wrist.numpy(), no_rotation.rest_wrist.numpy(), atol=1e-6)
    # Rotation is about the wrist: distances to the wrist are preserved by the global rotation.
    rotated = (out.vertices - out.joints[:, :1]).norm(dim=-1)
    plain = (no_rotation.vertices - no_rotation.joints[:, :1]).norm(dim=-1)
    torch.testing.assert_close(rotated, plain, atol=1e-5, rtol=0)


def test_rest_wrist_is_shaped_template_wrist(open_model):
    data = load_mano_pickle(open_hand_directory() / "MANO_LEFT.pkl")
    betas = np.random.default_rng(4).normal(size=(1, 10))
    out = _run(open_model, np.zeros((1, 3)), np.zeros((1, 45)), betas, np.zeros((1, 3)), [False])
    expected = data["J_regressor"][0] @ (data["v_template"] + data["shapedirs"] @ betas[0])
    np.testing.assert_allclose(out.rest_wrist[0].numpy(), expected, atol=1e-6)


def test_zero_pose_is_the_flat_template(open_model):
    translation = np.array([[0.1, -0.2, 0.5], [0.0, 0.0, 1.0]])
    out = _run(open_model, np.zeros((2, 3)), np.zeros((2, 45)), np.zeros((2, 10)), translation,
               [True, False])  # fmt: skip
    for i, side in enumerate(("RIGHT", "LEFT")):
        template = load_mano_pickle(open_hand_directory() / f"MANO_{side}.pkl")["v_template"]
        np.testing.assert_allclose(out.vertices[i].numpy(), template + translation[i], atol=1e-6)


def test_joint_order_and_tip_vertices(open_model):
    rng = np.random.default_rng(9)
    orient, pose, betas, translation = _inputs(rng, 2)
    out = _run(open_model, orient, pose, betas, translation, [True, False])
    for i, side in enumerate((True, False)):
        joints, vertices = out.joints[i], out.vertices[i]
        for freihand, vertex in zip((4, 8, 12, 16, 20), TIPS[side], strict=True):
            torch.testing.assert_close(joints[freihand], vertices[vertex], atol=0, rtol=0)


def test_model_identity_and_faces(open_model, random_models):
    assert open_model.is_open_model
    assert open_model.model_id.startswith("open_hand/1 sha256:")
    right, left = open_model.faces(True), open_model.faces(False)
    assert right.shape == (1538, 3) and right.dtype == np.int64
    np.testing.assert_array_equal(left, right[:, [0, 2, 1]])
    other = HandModel.from_directory(random_models[0])
    assert not other.is_open_model
    assert other.model_id.startswith("MANO sha256:")
    assert other.model_id != open_model.model_id


def test_missing_file_names_the_path(tmp_path, random_models):
    _, right, _ = random_models
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(pickle.dumps(right, protocol=2))
    with pytest.raises(HandModelError) as error:
        HandModel.from_directory(tmp_path)
    assert str(tmp_path / "MANO_LEFT.pkl") in str(error.value)
    assert "mano.is.tue.mpg.de" in str(error.value)


def test_wrong_shape_names_file_and_key(tmp_path, random_models):
    _, right, left = random_models
    broken = dict(left, shapedirs=left["shapedirs"][:, :, :5])
    _write(tmp_path, right, broken)
    with pytest.raises(HandModelError, match=r"MANO_LEFT\.pkl: 'shapedirs' has shape"):
        HandModel.from_directory(tmp_path)


def test_bad_input_shape_is_rejected(open_model):
    with pytest.raises(ValueError, match="hand_pose"):
        open_model(
            torch.zeros(2, 3), torch.zeros(2, 48), torch.zeros(2, 10), torch.zeros(2, 3),
            torch.tensor([True, True]),
        )  # fmt: skip
