"""HandRenderer against PyTorch3D's own rasteriser, the project's camera convention, depth
composition of several hands, gradients and the SH photometric model."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from pytorch3d.renderer import (
    BlendParams,
    MeshRasterizer,
    RasterizationSettings,
    SoftSilhouetteShader,
)
from pytorch3d.structures import Meshes

from smhr_core.camera import project
from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training.render import (
    AMBIENT_OFFSET,
    HandRenderer,
    albedo_from_texture,
    sh_shading,
    vertex_normals,
)


@pytest.fixture(scope="module")
def hand_model() -> HandModel:
    return HandModel.from_directory(open_hand_directory())


def _renderer(model: HandModel, size: int, **kwargs: object) -> HandRenderer:
    return HandRenderer(
        size,
        torch.from_numpy(np.array(model.faces(True))),
        torch.from_numpy(np.array(model.faces(False))),
        **kwargs,
    )


def _hands(
    model: HandModel, is_right: list[bool], centres: list[list[float]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed hands: vertices (N, 778, 3) and joints (N, 21, 3) with the mean vertex at
    `centres` (metres), palms turned a bit."""
    n = len(is_right)
    gen = torch.Generator().manual_seed(1)
    orient = torch.tensor([[0.4, 1.9, 0.3]]).repeat(n, 1) + 0.2 * torch.randn(n, 3, generator=gen)
    pose = 0.25 * torch.rand(n, 45, generator=gen)
    with torch.no_grad():
        out = model(orient, pose, torch.zeros(n, 10), torch.zeros(n, 3), torch.tensor(is_right))
    shift = (torch.tensor(centres) - out.vertices.mean(dim=1))[:, None]
    return out.vertices + shift, out.joints + shift


def test_hard_render_equals_pytorch3d_mesh_rasterizer(hand_model: HandModel) -> None:
    size = 64
    renderer = _renderer(hand_model, size, focal_px=100.0, principal_point_px=(27.0, 36.5))
    vertices, _ = _hands(hand_model, [True, False], [[-0.02, 0.0, 0.45], [0.03, 0.01, 0.5]])
    out = renderer(vertices[None], torch.tensor([[True, False]]), silhouette=False)
    faces = torch.cat(
        [
            torch.from_numpy(np.array(hand_model.faces(True))),
            torch.from_numpy(np.array(hand_model.faces(False))) + 778,
        ]
    )
    meshes = Meshes([vertices.reshape(-1, 3)], [faces])
    settings = RasterizationSettings(image_size=size, blur_radius=0.0, faces_per_pixel=1)
    reference = MeshRasterizer(cameras=renderer.cameras(1), raster_settings=settings)(meshes)
    covered = reference.pix_to_face[0, ..., 0] >= 0
    assert covered.sum() > 300
    assert torch.equal(out.mask[0, 0].bool(), covered)
    torch.testing.assert_close(out.depth[0, 0][covered], reference.zbuf[0, ..., 0][covered])
    expected_slot = (reference.pix_to_face[0, ..., 0] >= 1538).long()
    assert torch.equal(out.hand_index[0, 0][covered], expected_slot[covered])


def test_soft_silhouette_matches_pytorch3d(hand_model: HandModel) -> None:
    size = 64
    renderer = _renderer(hand_model, size, silhouette_faces_per_pixel=24)
    vertices, _ = _hands(hand_model, [True], [[0.0, 0.0, 0.6]])
    out = renderer(vertices[None], torch.tensor([[True]]))
    meshes = Meshes([vertices[0]], [torch.from_numpy(np.array(hand_model.faces(True)))])
    settings = RasterizationSettings(
        image_size=size, blur_radius=math.log(1 / 1e-4 - 1) * 1e-4, faces_per_pixel=24
    )
    fragments = MeshRasterizer(cameras=renderer.cameras(1), raster_settings=settings)(meshes)
    reference = SoftSilhouetteShader(BlendParams(sigma=1e-4, gamma=1e-4))(fragments, meshes)
    difference = (out.silhouette[0, 0] - reference[0, ..., 3]).abs()
    assert reference[0, ..., 3].sum() > 100
    assert difference.mean() < 2e-3
    assert (difference < 0.05).float().mean() > 0.99


def test_projection_convention_matches_smhr_core_camera(hand_model: HandModel) -> None:
    size = 128
    renderer = _renderer(hand_model, size)
    vertices, joints = _hands(hand_model, [True], [[0.01, -0.01, 0.9]])
    out = renderer(vertices[None], torch.tensor([[True]]), silhouette=False)
    mask = cv2.dilate(out.mask[0, 0].numpy().astype(np.uint8), np.ones((3, 3), np.uint8))
    k = np.array([[512.0, 0, size / 2], [0, 512.0, size / 2], [0, 0, 1]])
    for points in (joints[0].numpy(), vertices[0].numpy()):
        uv = np.floor(project(points, k)).astype(int)
        assert (uv >= 0).all() and (uv < size).all()
        assert mask[uv[:, 1], uv[:, 0]].all()
    # The mask is the mesh, not a blob: its box is close to the projected vertices' box.
    uv = project(vertices[0].numpy(), k)
    rows, cols = np.nonzero(out.mask[0, 0].numpy())
    assert abs(cols.min() - uv[:, 0].min()) < 1.5 and abs(cols.max() - uv[:, 0].max()) < 1.5
    assert abs(rows.min() - uv[:, 1].min()) < 1.5 and abs(rows.max() - uv[:, 1].max()) < 1.5


def test_nearer_hand_occludes_and_slots_are_kept(hand_model: HandModel) -> None:
    size = 96
    renderer = _renderer(hand_model, size)
    far, _ = _hands(hand_model, [True], [[0.0, 0.0, 0.7]])
    near = far * (0.5 / 0.7)  # same projection, nearer to the camera
    vertices = torch.stack([torch.cat([far, near]), torch.cat([near, far])])
    valid = torch.tensor([[True, True], [True, False]])
    out = renderer(
        vertices, torch.tensor([[True, True], [True, True]]), valid=valid, silhouette=False
    )
    # Image 0: the near hand (slot 1) covers the far one wherever both project.
    alone = renderer(far[None], torch.tensor([[True]]), silhouette=False).mask[0, 0].bool()
    assert (out.hand_index[0, 0][alone] == 1).all()
    # Image 1: slot 1 is not valid, so only slot 0 (the near hand) is drawn.
    assert set(out.hand_index[1, 0].unique().tolist()) == {-1, 0}
    assert out.depth[0, 0].max() < out.depth[1, 0].max() + 1e-6
    empty = renderer(vertices, torch.ones(2, 2, dtype=torch.bool), valid=torch.zeros(2, 2))
    assert empty.mask.sum() == 0 and empty.silhouette.sum() == 0 and empty.image.sum() == 0


def test_gradients_reach_vertices_colours_and_light(hand_model: HandModel) -> None:
    size = 64
    renderer = _renderer(hand_model, size)
    vertices, _ = _hands(hand_model, [True, False], [[-0.03, 0.0, 0.6], [0.03, 0.0, 0.6]])
    vertices = vertices.clone().requires_grad_(True)
    texture = torch.zeros(2, 778 * 3, requires_grad=True)
    light = torch.zeros(2, 27, requires_grad=True)
    colours = renderer.shade(vertices, albedo_from_texture(texture), light)
    out = renderer(vertices[None], torch.tensor([[True, False]]), colours=colours[None])
    target = torch.zeros(1, 1, size, size)
    loss = (out.silhouette - target).abs().mean() + out.image.mean()
    loss.backward()
    for tensor in (vertices, texture, light):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    # Shrinking the silhouette towards an empty target moves vertices away from the camera
    # or together: the gradient is not zero on the boundary vertices.
    assert vertices.grad.abs().amax() > 0


def test_sh_shading_bands() -> None:
    normals = torch.tensor([[[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]])
    flat = sh_shading(normals, torch.zeros(1, 27))
    ambient = math.pi / math.sqrt(4 * math.pi) * AMBIENT_OFFSET
    torch.testing.assert_close(flat, torch.full((1, 3, 3), ambient))
    light = torch.zeros(1, 3, 9)
    light[0, 0, 3] = 0.5  # red light from band 3 (-x): brightens normals facing -x
    shaded = sh_shading(normals, light.reshape(1, 27))
    band = 2 * math.pi / math.sqrt(3) * math.sqrt(3) / math.sqrt(4 * math.pi)
    assert shaded[0, 1, 0] == pytest.approx(ambient + 0.5 * band, rel=1e-5)
    assert shaded[0, 0, 0] == pytest.approx(ambient, rel=1e-5)
    assert shaded[0, 1, 1] == pytest.approx(ambient, rel=1e-5)
    albedo = albedo_from_texture(torch.zeros(1, 6))
    torch.testing.assert_close(albedo, torch.tensor([[[0.45, 0.35, 0.30]] * 2]))


def test_vertex_normals_point_out_of_the_right_hand(hand_model: HandModel) -> None:
    vertices, _ = _hands(hand_model, [True], [[0.0, 0.0, 0.5]])
    faces = torch.from_numpy(np.array(hand_model.faces(True)))
    normals = vertex_normals(vertices, faces)
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(1, 778))
    # Nudging each vertex along its normal grows the mesh: the silhouette can only widen.
    renderer = _renderer(hand_model, 64)
    base = renderer(vertices[None], torch.tensor([[True]]), silhouette=False).mask.sum()
    grown = renderer(
        (vertices + 0.003 * normals)[None], torch.tensor([[True]]), silhouette=False
    ).mask.sum()
    assert grown > base * 1.05
