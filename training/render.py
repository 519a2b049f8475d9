"""Differentiable rendering of hand meshes in the network's virtual camera (PyTorch3D).

Camera frame: metres, x right, y down, z forward (smhr_core.camera). Pixel `(u, v)` with
`u = fx * x / z + cx` falls in the pixel of column `floor(u)` (PyTorch3D samples pixel centres
at `+0.5`). Several hands of one image are rendered as one union mesh, so the nearest surface
wins at every pixel.

PyTorch3D has no binned rasteriser on the CPU, and its naive one costs 30-90 ns per pixel and
face (seconds per 384 x 384 batch) with a backward pass of minutes. `HandRenderer` therefore
selects the faces of each pixel itself, by enumerating the pixels under each face's box, with
PyTorch3D's definitions (pixel centres, nearest-K by depth, blur radius and signed squared
distances in NDC units, perspective-correct barycentrics), and computes the differentiable
quantities in PyTorch. Blending uses PyTorch3D's `SoftSilhouetteShader`; `HandRenderer.cameras`
gives the equivalent `PerspectiveCameras(in_ndc=False)`, and tests/training/test_render.py
checks the result against PyTorch3D's `MeshRasterizer` with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pytorch3d.renderer import BlendParams, PerspectiveCameras, SoftSilhouetteShader
from pytorch3d.renderer.mesh.rasterizer import Fragments

ALBEDO_BASE = (0.45, 0.35, 0.30)
"""Mean skin albedo (RGB) that the `texture` head's offsets are added to."""
AMBIENT_OFFSET = 0.8
"""Added to the ambient (first) SH band of every colour channel of `light`."""
NUM_SH_BANDS = 9
LIGHT_DIM = 3 * NUM_SH_BANDS

# Constants of the real SH basis scaled by the Lambertian kernel (Ramamoorthi & Hanrahan).
_A0, _A1, _A2 = math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0)
_C0 = 1.0 / math.sqrt(4.0 * math.pi)
_C1 = math.sqrt(3.0) / math.sqrt(4.0 * math.pi)
_C2 = 3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi)
_D0 = 0.5 / math.sqrt(3.0)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals: area-weighted sum of the adjacent face normals.

    vertices (N, V, 3), faces (F, 3) int64 shared by the batch. Returns (N, V, 3).
    """
    v0 = vertices[:, faces[:, 0]]
    v1 = vertices[:, faces[:, 1]]
    v2 = vertices[:, faces[:, 2]]
    face_normals = torch.cross(v1 - v0, v2 - v1, dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(1, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 SH basis values of unit normals (..., 3) -> (..., 9)."""
    nx, ny, nz = normals.unbind(-1)
    return torch.stack(
        [
            torch.full_like(nx, _A0 * _C0),
            -_A1 * _C1 * ny,
            _A1 * _C1 * nz,
            -_A1 * _C1 * nx,
            _A2 * _C2 * nx * ny,
            -_A2 * _C2 * ny * nz,
            _A2 * _C2 * _D0 * (3.0 * nz * nz - 1.0),
            -_A2 * _C2 * nx * nz,
            _A2 * _C2 * 0.5 * (nx * nx - ny * ny),
        ],
        dim=-1,
    )


def sh_shading(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """RGB irradiance of unit normals (N, V, 3) under `light` (N, 27) colour-major (3 x 9).

    The ambient offset `AMBIENT_OFFSET` is added here, so `light = 0` is a uniform grey light.
    """
    if light.shape[-1] != LIGHT_DIM:
        raise ValueError(f"light must have {LIGHT_DIM} values per hand, got {tuple(light.shape)}")
    coeffs = light.reshape(-1, 3, NUM_SH_BANDS).clone()
    coeffs[:, :, 0] = coeffs[:, :, 0] + AMBIENT_OFFSET
    return torch.einsum("nvk,nck->nvc", sh_basis(normals), coeffs)


def albedo_from_texture(texture: torch.Tensor) -> torch.Tensor:
    """Per-vertex albedo from the `texture` head's offsets (N, 778*3) or (N, 778, 3)."""
    base = torch.tensor(ALBEDO_BASE, dtype=texture.dtype, device=texture.device)
    return texture.reshape(texture.shape[0], -1, 3) + base


@dataclass(frozen=True)
class RenderOutput:
    """What `HandRenderer` returns for a batch of B images of R x R pixels."""

    image: torch.Tensor
    """(B, 3, R, R) RGB colour of the nearest hand surface; 0 where no hand."""
    mask: torch.Tensor
    """(B, 1, R, R) float 0/1: a hand covers the pixel centre (not differentiable)."""
    silhouette: torch.Tensor | None
    """(B, 1, R, R) soft silhouette in [0, 1] (differentiable); None unless requested."""
    hand_index: torch.Tensor
    """(B, 1, R, R) int64 slot index of the visible hand at each pixel, -1 where none."""
    depth: torch.Tensor
    """(B, 1, R, R) camera z of the visible surface, metres; 0 where no hand."""


class HandRenderer(torch.nn.Module):
    """Render up to H hands per image in the pinhole camera K of an R x R image.

    `faces_right` / `faces_left` are the (F, 3) triangles of the right and left hand models
    (`HandModel.faces`). `focal_px` and the principal point default to the network's virtual
    camera K_v (f = 512, c = R / 2). `silhouette_sigma` and the blur radius of the soft
    silhouette are in PyTorch3D's squared NDC units of the whole R x R image.
    """

    def __init__(
        self,
        resolution: int,
        faces_right: torch.Tensor,
        faces_left: torch.Tensor,
        focal_px: float = 512.0,
        principal_point_px: tuple[float, float] | None = None,
        silhouette_sigma: float = 1e-4,
        silhouette_faces_per_pixel: int = 16,
    ) -> None:
        super().__init__()
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution = int(resolution)
        self.focal_px = float(focal_px)
        centre = resolution / 2.0
        self.principal_point_px = tuple(principal_point_px or (centre, centre))
        faces_right = torch.as_tensor(faces_right, dtype=torch.int64)
        faces_left = torch.as_tensor(faces_left, dtype=torch.int64)
        if (
            faces_right.shape != faces_left.shape
            or faces_right.dim() != 2
            or (faces_right.shape[1] != 3)
        ):
            raise ValueError(
                f"faces must be (F, 3) and equal in size; got right {tuple(faces_right.shape)}, "
                f"left {tuple(faces_left.shape)}"
            )
        self.register_buffer("faces_right", faces_right, persistent=False)
        self.register_buffer("faces_left", faces_left, persistent=False)
        self.silhouette_sigma = float(silhouette_sigma)
        self.silhouette_blur_radius = math.log(1.0 / 1e-4 - 1.0) * silhouette_sigma
        self.silhouette_faces_per_pixel = int(silhouette_faces_per_pixel)

    def cameras(self, batch: int, device: torch.device | str = "cpu") -> PerspectiveCameras:
        """PyTorch3D cameras equal to K (x right, y down, z forward) for `batch` images."""
        # PyTorch3D's view frame is +X left, +Y up: a half-turn about z maps ours onto it.
        rotation = torch.diag(torch.tensor([-1.0, -1.0, 1.0], device=device))
        size = torch.tensor([[self.resolution, self.resolution]], device=device)
        return PerspectiveCameras(
            focal_length=torch.tensor([[self.focal_px, self.focal_px]]).expand(batch, 2),
            principal_point=torch.tensor([self.principal_point_px]).expand(batch, 2),
            R=rotation.expand(batch, 3, 3),
            T=torch.zeros(batch, 3),
            in_ndc=False,
            image_size=size.expand(batch, 2),
            device=device,
        )

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates (..., 2) of camera-frame points (..., 3) in metres."""
        z = points[..., 2:3]
        cx, cy = self.principal_point_px
        centre = torch.tensor([cx, cy], dtype=points.dtype, device=points.device)
        return points[..., :2] * self.focal_px / z + centre

    def shade(
        self, vertices: torch.Tensor, albedo: torch.Tensor, light: torch.Tensor
    ) -> torch.Tensor:
        """Vertex colours (N, V, 3) = albedo (N, V, 3) x SH shading (normals from right faces)."""
        normals = vertex_normals(vertices, self.faces_right)
        return albedo * sh_shading(normals, light)

    def forward(
        self,
        vertices: torch.Tensor,
        is_right: torch.Tensor,
        valid: torch.Tensor | None = None,
        colours: torch.Tensor | None = None,
        silhouette: bool = True,
    ) -> RenderOutput:
        """Render B images of H hand slots each.

        vertices (B, H, V, 3) metres in the camera frame; is_right (B, H) bool picks each
        slot's faces; valid (B, H) bool drops empty slots (default all valid); colours
        (B, H, V, 3) per-vertex RGB (e.g. from `shade`), default white. With `silhouette`
        the soft silhouette is rendered too (a second, blurred rasterisation). Faces with a
        vertex closer than 1 mm to the camera plane are not drawn.
        """
        if vertices.dim() != 4 or vertices.shape[-1] != 3:
            raise ValueError(f"vertices must be (B, H, V, 3), got {tuple(vertices.shape)}")
        batch, slots, num_verts, _ = vertices.shape
        device = vertices.device
        is_right = torch.as_tensor(is_right, device=device).bool().reshape(batch, slots)
        if valid is None:
            valid = torch.ones(batch, slots, dtype=torch.bool, device=device)
        valid = torch.as_tensor(valid, device=device).bool().reshape(batch, slots)
        if colours is None:
            colours = torch.ones_like(vertices)
        if colours.shape != vertices.shape:
            raise ValueError(
                f"colours {tuple(colours.shape)} must match vertices {tuple(vertices.shape)}"
            )
        # One face list over all valid slots: face f of slot (b, h) has vertices indexing the
        # flattened (B * H * V) vertex array.
        flat_verts = vertices.reshape(-1, 3)
        face_blocks, image_of_face, slot_of_face = [], [], []
        for b, h in torch.nonzero(valid).tolist():
            faces = self.faces_right if bool(is_right[b, h]) else self.faces_left
            face_blocks.append(faces.to(device) + (b * slots + h) * num_verts)
            image_of_face.append(torch.full((faces.shape[0],), b, dtype=torch.int64))
            slot_of_face.append(torch.full((faces.shape[0],), h, dtype=torch.int64))
        size = self.resolution
        if not face_blocks:
            zeros = vertices.new_zeros(batch, 1, size, size)
            return RenderOutput(
                image=vertices.new_zeros(batch, 3, size, size),
                mask=zeros,
                silhouette=zeros.clone() if silhouette else None,
                hand_index=torch.full((batch, 1, size, size), -1, dtype=torch.int64, device=device),
                depth=zeros.clone(),
            )
        faces = torch.cat(face_blocks)
        image_of_face = torch.cat(image_of_face).to(device)
        slot_of_face = torch.cat(slot_of_face).to(device)
        face_verts = flat_verts[faces]  # (F, 3, 3)

        hard = self._fragments(face_verts, image_of_face, batch, 0.0, 1)
        pix_to_face = hard.pix_to_face
        covered = pix_to_face[..., 0] >= 0
        face_colours = colours.reshape(-1, 3)[faces]
        b_idx, y_idx, x_idx = torch.nonzero(covered, as_tuple=True)
        visible = pix_to_face[b_idx, y_idx, x_idx, 0]
        weights = hard.bary_coords[b_idx, y_idx, x_idx, 0]  # (n, 3)
        shaded = (weights[..., None] * face_colours[visible]).sum(1)
        image = colours.new_zeros(batch, size, size, 3).index_put((b_idx, y_idx, x_idx), shaded)
        hand_index = torch.where(covered, slot_of_face[pix_to_face[..., 0].clamp(min=0)], -1)
        depth = torch.where(covered, hard.zbuf[..., 0], torch.zeros_like(hard.zbuf[..., 0]))
        soft = None
        if silhouette:
            fragments = self._fragments(
                face_verts,
                image_of_face,
                batch,
                self.silhouette_blur_radius,
                self.silhouette_faces_per_pixel,
            )
            blend = BlendParams(sigma=self.silhouette_sigma, gamma=1e-4)
            rgba = SoftSilhouetteShader(blend_params=blend)(fragments, meshes=None)
            soft = rgba[..., 3].unsqueeze(1)
        return RenderOutput(
            image=image.permute(0, 3, 1, 2),
            mask=covered.unsqueeze(1).to(vertices.dtype),
            silhouette=soft,
            hand_index=hand_index.unsqueeze(1),
            depth=depth.unsqueeze(1),
        )

    def _fragments(
        self,
        face_verts: torch.Tensor,
        image_of_face: torch.Tensor,
        batch: int,
        blur_radius: float,
        faces_per_pixel: int,
    ) -> Fragments:
        """PyTorch3D fragments (B, R, R, K) of camera-frame faces (F, 3, 3), differentiable.

        Same definitions as PyTorch3D's mesh rasteriser: a pixel (centre at +0.5) takes the
        K faces nearest in depth among those that contain it or, with `blur_radius` (squared
        NDC units), lie within that distance of it; `dists` is the signed squared distance
        (negative inside), `bary_coords` are perspective-correct.
        """
        size, k = self.resolution, faces_per_pixel
        device = face_verts.device
        pix_to_face = torch.full((batch * size * size, k), -1, dtype=torch.int64, device=device)
        with torch.no_grad():
            for b in range(batch):
                face_ids = torch.nonzero(image_of_face == b).flatten()
                if len(face_ids):
                    self._select_faces(
                        face_verts[face_ids].detach(), face_ids, b, blur_radius, pix_to_face
                    )
        pix_to_face = pix_to_face.view(batch, size, size, k)
        hit = pix_to_face >= 0
        _, y, x, _ = torch.nonzero(hit, as_tuple=True)
        pixel = torch.stack([x, y], dim=-1).to(face_verts.dtype) + 0.5
        bary, depth, dists = self._pixel_geometry(face_verts[pix_to_face[hit]], pixel)
        shape = pix_to_face.shape
        return Fragments(
            pix_to_face=pix_to_face,
            zbuf=depth.new_full(shape, -1.0).index_put((hit,), depth),
            bary_coords=bary.new_full((*shape, 3), -1.0).index_put((hit,), bary),
            dists=dists.new_full(shape, -1.0).index_put((hit,), dists),
        )

    def _screen(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel x (n, 3), pixel y (n, 3) and depth z (n, 3) of the corners of faces (n, 3, 3)."""
        cx, cy = self.principal_point_px
        z = faces[..., 2]
        return faces[..., 0] * self.focal_px / z + cx, faces[..., 1] * self.focal_px / z + cy, z

    def _pixel_geometry(
        self, faces: torch.Tensor, pixel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Perspective-correct barycentrics (n, 3), depth (n,) in metres and signed squared
        distance (n,) in NDC units of camera-frame faces (n, 3, 3) at pixel points (n, 2)."""
        x, y, z = self._screen(faces)
        return self._geometry(x, y, z, pixel[:, 0], pixel[:, 1], with_distance=True)

    def _geometry(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        z: torch.Tensor,
        px: torch.Tensor,
        py: torch.Tensor,
        with_distance: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Barycentrics, depth and (optionally) signed squared NDC distance of the pixel
        points (px, py) (n,) in the faces with screen corners x, y (n, 3) and depths z (n, 3).
        Without `with_distance`, the third result is None and depth is only valid inside."""
        # Component-wise arithmetic: reductions over tiny trailing dimensions are slow on CPU.
        x0, x1, x2 = x.unbind(-1)
        y0, y1, y2 = y.unbind(-1)
        z0, z1, z2 = z.unbind(-1)
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        area = torch.where(area.abs() < 1e-12, torch.full_like(area, 1e-12), area)
        w0 = ((x1 - px) * (y2 - py) - (y1 - py) * (x2 - px)) / area
        w1 = ((x2 - px) * (y0 - py) - (y2 - py) * (x0 - px)) / area
        w2 = 1.0 - w0 - w1
        q0, q1, q2 = w0 / z0, w1 / z1, w2 / z2
        inv_depth = q0 + q1 + q2
        bary = torch.stack([q0, q1, q2], dim=-1) / inv_depth[:, None]
        inside = (w0 > 0) & (w1 > 0) & (w2 > 0)
        if not with_distance:
            return bary, torch.where(inside, 1.0 / inv_depth, -1.0), None

        def segment_distance2(
            ax: torch.Tensor, ay: torch.Tensor, bx: torch.Tensor, by: torch.Tensor
        ) -> torch.Tensor:
            ex, ey = bx - ax, by - ay
            t = ((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey).clamp(min=1e-12)
            t = t.clamp(0.0, 1.0)
            dx, dy = px - ax - t * ex, py - ay - t * ey
            return dx * dx + dy * dy

        dist2 = (
            torch.minimum(
                torch.minimum(segment_distance2(x0, y0, x1, y1), segment_distance2(x1, y1, x2, y2)),
                segment_distance2(x2, y2, x0, y0),
            )
            * (2.0 / self.resolution) ** 2
        )
        # Outside a face, its depth is taken at the nearest point (clipped barycentrics).
        c0, c1, c2 = w0.clamp(min=0.0), w1.clamp(min=0.0), w2.clamp(min=0.0)
        outside_depth = (c0 + c1 + c2) / (c0 / z0 + c1 / z1 + c2 / z2).clamp(min=1e-12)
        depth = torch.where(inside, 1.0 / inv_depth, outside_depth)
        return bary, depth, torch.where(inside, -dist2, dist2)

    def _select_faces(
        self,
        faces: torch.Tensor,
        face_ids: torch.Tensor,
        image: int,
        blur_radius: float,
        pix_to_face: torch.Tensor,
    ) -> None:
        """Write into pix_to_face (B * R * R, K) the K nearest faces at each pixel of `image`.

        Enumerates, for every face, the pixel centres inside its box grown by the blur radius,
        so the cost follows the faces' pixel area rather than pixels x faces.
        """
        size, k = self.resolution, pix_to_face.shape[1]
        device = faces.device
        x, y, z = self._screen(faces)
        margin = math.sqrt(blur_radius) * size / 2.0
        area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
        first_x = torch.ceil(x.amin(dim=1) - margin - 0.5).long().clamp(min=0)
        first_y = torch.ceil(y.amin(dim=1) - margin - 0.5).long().clamp(min=0)
        span_x = (torch.floor(x.amax(dim=1) + margin - 0.5).long().clamp(max=size - 1)) - first_x
        span_y = (torch.floor(y.amax(dim=1) + margin - 0.5).long().clamp(max=size - 1)) - first_y
        span_x, span_y = (span_x + 1).clamp(min=0), (span_y + 1).clamp(min=0)
        usable = (z.amin(dim=1) > 1e-3) & (area.abs() > 1e-12)
        counts = torch.where(usable, span_x * span_y, 0)
        total = int(counts.sum())
        if total == 0:
            return
        owner = torch.repeat_interleave(torch.arange(len(faces), device=device), counts)
        rank = torch.arange(total, device=device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        width = span_x[owner]
        px = first_x[owner] + rank % width
        py = first_y[owner] + rank // width
        _, depth, dists = self._geometry(
            x[owner],
            y[owner],
            z[owner],
            px.to(faces.dtype) + 0.5,
            py.to(faces.dtype) + 0.5,
            with_distance=blur_radius > 0,
        )
        keep = depth > 1e-3
        if dists is not None:
            keep &= (dists < 0) | (dists < blur_radius)
        owner, depth = owner[keep], depth[keep]
        pixel_id = (image * size + py[keep]) * size + px[keep]
        if k == 1:
            # Nearest face only: a scatter-min over pixels instead of sorting every pair.
            nearest = torch.full((pix_to_face.shape[0],), math.inf, dtype=depth.dtype)
            nearest = nearest.to(device).scatter_reduce(0, pixel_id, depth, reduce="amin")
            wins = depth == nearest[pixel_id]
            pix_to_face[pixel_id[wins], 0] = face_ids[owner[wins]]
            return
        by_depth = torch.argsort(depth)
        order = by_depth[torch.argsort(pixel_id[by_depth], stable=True)]
        pixel_id, owner = pixel_id[order], owner[order]
        _, per_pixel = torch.unique_consecutive(pixel_id, return_counts=True)
        slot = torch.arange(len(pixel_id), device=device) - torch.repeat_interleave(
            torch.cumsum(per_pixel, 0) - per_pixel, per_pixel
        )
        nearest = slot < k
        pix_to_face[pixel_id[nearest], slot[nearest]] = face_ids[owner[nearest]]
