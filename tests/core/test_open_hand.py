"""The procedural open hand model: shipped files, mesh validity, rig, axes, and smplx posing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from smhr_core.hand_model import HandModel
from smhr_core.mano_pickle import load_mano_pickle
from smhr_core.open_hand import (
    MANO_PARENTS,
    NO_PARENT,
    build_open_hand,
    open_hand_directory,
    write_open_hand_model,
)

FINGER_CHAINS = {"thumb": (1, 2, 3, 4), "index": (5, 6, 7, 8), "middle": (9, 10, 11, 12),
                 "ring": (13, 14, 15, 16), "pinky": (17, 18, 19, 20)}  # fmt: skip
"""FreiHAND joint indices of each finger, base to tip."""


@pytest.fixture(scope="module")
def right():
    return build_open_hand(True)


@pytest.fixture(scope="module")
def left():
    return build_open_hand(False)


@pytest.fixture(scope="module")
def model():
    return HandModel.from_directory(open_hand_directory())


def test_shipped_files_equal_a_fresh_build(right, left, tmp_path):
    write_open_hand_model(tmp_path)
    for side, fresh in (("RIGHT", right), ("LEFT", left)):
        shipped = load_mano_pickle(open_hand_directory() / f"MANO_{side}.pkl")
        rewritten = load_mano_pickle(tmp_path / f"MANO_{side}.pkl")
        assert sorted(shipped) == sorted(fresh) == sorted(rewritten)
        for key, value in fresh.items():
            assert shipped[key].dtype == value.dtype, key
            np.testing.assert_array_equal(rewritten[key], value, err_msg=key)
            if np.issubdtype(value.dtype, np.integer):
                np.testing.assert_array_equal(shipped[key], value, err_msg=key)
            else:
                # Not bit for bit: numpy's vectorised maths differs in the last bit on CPUs with
                # AVX-512, and shapedirs, central differences of the build, amplify that to
                # 2e-13 m (measured; with NPY_DISABLE_CPU_FEATURES="AVX512_SPR AVX512_ICL X86_V4"
                # the same machine rebuilds the shipped files bit for bit). A nanometre is not.
                np.testing.assert_allclose(shipped[key], value, rtol=1e-6, atol=1e-9, err_msg=key)
    assert (open_hand_directory() / "README.md").is_file()


def test_layout_matches_mano(right):
    shapes = {
        "v_template": (778, 3), "f": (1538, 3), "J_regressor": (16, 778),
        "kintree_table": (2, 16), "weights": (778, 16), "posedirs": (778, 3, 135),
        "shapedirs": (778, 3, 10), "hands_components": (45, 45), "hands_mean": (45,),
    }  # fmt: skip
    for key, shape in shapes.items():
        assert right[key].shape == shape, key
    assert right["kintree_table"][0, 0] == NO_PARENT == 4294967295
    np.testing.assert_array_equal(right["kintree_table"][0], MANO_PARENTS)
    np.testing.assert_array_equal(right["kintree_table"][1], np.arange(16))
    np.testing.assert_allclose(right["hands_components"] @ right["hands_components"].T, np.eye(45))
    assert not right["hands_mean"].any()
    assert not right["posedirs"].any()  # documented: no pose corrective shapes


def _edges(faces):
    directed = Counter()
    for a, b, c in faces.tolist():
        directed.update([(a, b), (b, c), (c, a)])
    return directed


def test_mesh_is_one_consistently_oriented_surface_open_only_at_the_wrist(right):
    faces, v = right["f"].astype(np.int64), right["v_template"].astype(np.float64)
    directed = _edges(faces)
    assert max(directed.values()) == 1  # no edge used twice in the same direction
    undirected = Counter(tuple(sorted(e)) for e in directed.elements())
    assert set(undirected.values()) == {1, 2}
    boundary = [e for e, n in undirected.items() if n == 1]
    # Every interior edge is traversed once each way: consistent winding.
    assert all((b, a) in directed for (a, b) in directed if tuple(sorted((a, b))) not in boundary)
    # A single boundary loop of 16 edges (the wrist opening, as in MANO).
    assert len(boundary) == 16
    loop_vertices = {k for e in boundary for k in e}
    assert len(loop_vertices) == 16
    assert all(n == 2 for n in Counter(k for e in boundary for k in e).values())
    assert set(np.unique(faces)) == set(range(778))
    areas = 0.5 * np.linalg.norm(
        np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]), axis=1
    )
    assert areas.min() > 1e-7  # m^2: no degenerate triangles
    # Outward normals: the volume closed with a fan over the wrist opening is positive.
    centre = v[sorted(loop_vertices)].mean(axis=0)
    volume = np.einsum("ij,ij->i", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])).sum()
    for a, b in directed:
        if tuple(sorted((a, b))) in boundary:
            volume += centre @ np.cross(v[b], v[a])
    volume /= 6.0
    assert 150e-6 < volume < 600e-6  # m^3 (a real hand is roughly 300-500 cm^3)


def test_regressor_and_skinning_weights(right):
    regressor, weights = right["J_regressor"], right["weights"]
    np.testing.assert_allclose(regressor.sum(axis=1), 1.0, atol=1e-6)
    assert regressor.min() >= 0.0
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert weights.min() >= 0.0
    v = right["v_template"]
    joints = regressor @ v
    for j in range(16):
        used = regressor[j] > 0
        assert used.sum() >= 8
        # Regressed from nearby vertices (a joint's own cross-section, within 4 cm).
        assert np.linalg.norm(v[used] - joints[j], axis=1).max() < 0.04
    # Blending: every finger joint shares some vertices with its parent.
    for j in range(1, 16):
        parent = MANO_PARENTS[j]
        shared = (weights[:, j] > 0.2) & (weights[:, parent] > 0.2)
        assert shared.sum() >= 5, j


def test_dimensions_axes_and_tips(right):
    v = right["v_template"]
    joints = right["J_regressor"] @ v
    wrist = joints[0]
    tips = {"thumb": 745, "index": 317, "middle": 444, "ring": 556, "pinky": 673}
    assert 0.16 < np.linalg.norm(v[444] - wrist) < 0.20  # metres
    assert np.linalg.norm(v.mean(axis=0)) < 0.05  # template near the origin, like MANO's
    # Fingers point along -x, the thumb is towards +z and the pinky towards -z.
    for name in ("index", "middle", "ring", "pinky"):
        assert v[tips[name], 0] < wrist[0] - 0.12
    assert v[745, 2] > v[317, 2] > v[444, 2] > v[556, 2] > v[673, 2]
    # Each tip is the end of its finger: the farthest vertex along the last bone near it.
    for name, last in (("index", 3), ("middle", 6), ("pinky", 9), ("ring", 12), ("thumb", 15)):
        direction = v[tips[name]] - joints[last]
        direction /= np.linalg.norm(direction)
        along = (v - joints[last]) @ direction
        across = np.linalg.norm(v - joints[last] - along[:, None] * direction, axis=1)
        on_finger = (across < 0.012) & (along > 0.0)
        assert on_finger.sum() > 20
        assert along[on_finger].max() - along[tips[name]] < 1e-4
    assert np.linalg.norm(v[444] - v[445]) < 0.002


def test_left_is_the_mirror_of_the_right(right, left):
    mirror = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(left["v_template"], right["v_template"] * mirror)
    np.testing.assert_array_equal(left["f"], right["f"][:, [0, 2, 1]])
    np.testing.assert_array_equal(left["J_regressor"], right["J_regressor"])
    np.testing.assert_array_equal(left["weights"], right["weights"])
    np.testing.assert_array_equal(left["shapedirs"], right["shapedirs"] * mirror[None, :, None])


def test_shape_basis_is_meaningful(right):
    shapedirs = right["shapedirs"].reshape(-1, 10).astype(np.float64)
    assert np.linalg.matrix_rank(shapedirs, tol=1e-6) == 10
    v, regressor = right["v_template"].astype(np.float64), right["J_regressor"]

    def hand_length(beta):
        shaped = v + right["shapedirs"] @ beta
        return np.linalg.norm(shaped[444] - regressor[0] @ shaped)

    beta = np.zeros(10)
    beta[0] = 2.0  # overall size
    assert hand_length(beta) > 1.05 * hand_length(np.zeros(10))
    assert hand_length(-beta) < 0.95 * hand_length(np.zeros(10))


def test_smplx_poses_the_shipped_model_with_joints_along_the_fingers(model):
    n = 3
    pose = np.zeros((n, 15, 3))
    pose[1, [0, 3, 6, 9], 2] = 1.2  # MCP flexion of index, middle, pinky, ring (about +z)
    pose[2] = np.random.default_rng(1).normal(scale=0.2, size=(15, 3))
    out = model(
        torch.zeros(n, 3), torch.tensor(pose.reshape(n, 45), dtype=torch.float32),
        torch.zeros(n, 10), torch.zeros(n, 3), torch.tensor([True, True, False]),
    )  # fmt: skip
    assert out.vertices.shape == (n, 778, 3)
    assert torch.isfinite(out.vertices).all()
    for i in range(n):
        joints = out.joints[i].numpy()
        wrist = joints[0]
        for chain in FINGER_CHAINS.values():
            distance = np.linalg.norm(joints[list(chain)] - wrist, axis=1)
            assert np.all(np.diff(distance) > 0.0), (i, chain)  # tips farthest from the wrist
            bones = np.linalg.norm(np.diff(joints[[0, *chain]], axis=0), axis=1)
            assert bones.min() > 0.01  # metres
    # Flexing towards +z about the knuckles curls the fingers to the palm side (-y), as MANO.
    flat, curled = out.joints[0].numpy(), out.joints[1].numpy()
    for tip in (8, 12, 16, 20):
        assert curled[tip, 1] < flat[tip, 1] - 0.03
        assert np.linalg.norm(curled[tip] - curled[0]) < np.linalg.norm(flat[tip] - flat[0])
