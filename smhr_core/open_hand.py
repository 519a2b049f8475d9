"""An open hand model written for this project, saved in the MANO pkl layout.

It is NOT MANO: it is built procedurally (a palm tube, four fingers and a thumb as tubes of
elliptical rings) so that the project runs without the licensed MANO files. It has MANO's
interface: 778 vertices, 1538 faces (open at the wrist like MANO), MANO's 16-joint kinematic tree
and joint order, fingertip vertices at the indices the SMHR release reads (thumb 745, index 317,
middle 444 and 445, ring 556, pinky 673), a joint regressor, smooth skinning weights and a
10-dimensional shape basis. Pose correctives (`posedirs`) are zero. The right hand follows MANO's
right template axes (fingers along -x, palm facing -y, thumb towards +z, wrist near
(0.095, 0.006, 0.006) m); the left hand is its mirror image in x.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPEN_HAND_VERSION = 1
NUM_VERTICES = 778
NUM_FACES = 1538
NUM_JOINTS = 16
NO_PARENT = 4294967295
"""Parent id of the root in MANO's `kintree_table` (uint32 -1)."""

MANO_PARENTS = (NO_PARENT, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
"""MANO joint order: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb."""

TIP_VERTICES = {"thumb": 745, "index": 317, "middle": 444, "ring": 556, "pinky": 673}
MIDDLE_TIP_LEFT = 445
"""The release reads the left middle fingertip at 445; both 444 and 445 sit at the tip here."""

_WRIST_ORIGIN = np.array([0.095, 0.006, 0.006])
"""Where the hand frame's origin (the wrist) lands in the right model, metres."""

_RING = 10
"""Vertices around a finger or thumb."""
_PALM_SLOTS = 20
"""Vertices across the dorsal (and across the palmar) side of a palm ring: 5 per finger."""


@dataclass(frozen=True)
class _Finger:
    name: str
    joints: tuple[int, int, int]
    mcp_u: float
    """Distance of the knuckle from the wrist along the hand, metres."""
    mcp_z: float
    """Sideways position of the knuckle (towards the thumb is positive), metres."""
    angle: float
    """Direction in the palm plane, radians towards the thumb."""
    lengths: tuple[float, float, float]
    """Knuckle to middle joint, middle to last joint, last joint to tip, metres."""
    half_width: tuple[float, float]
    """Proximal and distal half-width, metres."""
    dorsal: tuple[float, float]
    palmar: tuple[float, float]


_FINGERS = (
    _Finger("index", (1, 2, 3), 0.092, 0.026, 0.10, (0.036, 0.022, 0.020),
            (0.0099, 0.0080), (0.0082, 0.0066), (0.0092, 0.0076)),
    _Finger("middle", (4, 5, 6), 0.096, 0.0055, 0.02, (0.040, 0.025, 0.021),
            (0.0100, 0.0082), (0.0085, 0.0068), (0.0095, 0.0078)),
    _Finger("ring", (10, 11, 12), 0.092, -0.0145, -0.07, (0.038, 0.024, 0.020),
            (0.0095, 0.0077), (0.0080, 0.0064), (0.0090, 0.0073)),
    _Finger("pinky", (7, 8, 9), 0.082, -0.0330, -0.17, (0.030, 0.018, 0.018),
            (0.0085, 0.0068), (0.0072, 0.0058), (0.0080, 0.0066)),
)  # fmt: skip

_THUMB_JOINTS = (13, 14, 15)
_THUMB_LENGTHS = (0.040, 0.032, 0.030)
"""Base joint to knuckle, knuckle to last joint, last joint to tip, metres."""

_PALM_V = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Palm rings, as fractions of the way from the palm base to each knuckle."""
_HOLE_ROWS = (0, 1, 2)
"""Palm rows the thumb's opening spans."""
_HOLE_POSITIONS = (37, 38, 39, 0)
"""Ring positions around the thumb's opening (palmar slots 2, 1, 0 and dorsal slot 0)."""


@dataclass(frozen=True)
class _Shape:
    """Procedural shape parameters; each beta moves one of them (see `_BETA_STEPS`)."""

    scale: float = 1.0
    finger_length: float = 1.0
    palm_width: float = 1.0
    thickness: float = 1.0
    palm_length: float = 1.0
    thumb_length: float = 1.0
    palm_thickness: float = 1.0
    spread: float = 0.0
    pinky_length: float = 1.0
    index_vs_ring: float = 0.0


_BETA_STEPS = (
    ("scale", 0.04),
    ("finger_length", 0.05),
    ("palm_width", 0.05),
    ("thickness", 0.07),
    ("palm_length", 0.05),
    ("thumb_length", 0.06),
    ("palm_thickness", 0.08),
    ("spread", 0.06),
    ("pinky_length", 0.06),
    ("index_vs_ring", 0.04),
)
"""Shape parameter moved by each of the 10 betas, and by how much per unit beta."""


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _point(u: float, y: float, z: float) -> np.ndarray:
    """Hand-frame point (u along the hand from the wrist, y dorsal, z towards the thumb)."""
    return _WRIST_ORIGIN + np.array([-u, y, z])


def _direction(u: float, y: float, z: float) -> np.ndarray:
    d = np.array([-u, y, z])
    return d / np.linalg.norm(d)


@dataclass
class _Frame:
    """Orthonormal frame with lat x up = axis; rings run counter-clockwise about `axis`."""

    lat: np.ndarray
    up: np.ndarray
    axis: np.ndarray


_PALM_FRAME = _Frame(_direction(0, 0, 1), _direction(0, 1, 0), _direction(1, 0, 0))


def _ellipse(
    centre: np.ndarray, frame: _Frame, a: float, dorsal: float, palmar: float, n: int
) -> np.ndarray:
    theta = (np.arange(n) + 0.5) * 2.0 * np.pi / n
    sin, cos = np.sin(theta), np.cos(theta)
    height = np.where(sin >= 0.0, dorsal, palmar) * sin
    return centre + a * cos[:, None] * frame.lat + height[:, None] * frame.up


class _Mesh:
    """Vertices with skinning bookkeeping, and triangles."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []
        self.chain: list[int] = []
        """-1 palm/wrist, 0-3 finger index in _FINGERS, 4 thumb."""
        self.station: list[float] = []
        """Distance along the chain from its first joint, metres (negative below it)."""
        self.faces: list[tuple[int, int, int]] = []

    def add(self, points: np.ndarray, chain: int, station: float) -> list[int]:
        start = len(self.points)
        for p in np.atleast_2d(points):
            self.points.append(np.asarray(p, dtype=np.float64))
            self.chain.append(chain)
            self.station.append(station)
        return list(range(start, len(self.points)))

    def zip(self, a: list[int], b: list[int], frame: _Frame) -> None:
        """Triangulate the band between loop `a` and the next loop `b` along `frame.axis`."""
        a, ta = self._parametrise(a, frame)
        b, tb = self._parametrise(b, frame)
        na, nb = len(a), len(b)
        ta = np.append(ta, ta[0] + 1.0)
        tb = np.append(tb, tb[0] + 1.0)
        i = j = 0
        while i < na or j < nb:
            if j == nb or (i < na and ta[i + 1] <= tb[j + 1]):
                self.faces.append((a[i], a[(i + 1) % na], b[j % nb]))
                i += 1
            else:
                self.faces.append((a[i % na], b[(j + 1) % nb], b[j]))
                j += 1

    def _parametrise(self, loop: list[int], frame: _Frame) -> tuple[list[int], np.ndarray]:
        """Start the loop at the vertex just past the `lat` direction; arc-length parameter."""
        p = np.array([self.points[k] for k in loop])
        rel = p - p.mean(axis=0)
        if len(loop) > 2:
            x, y = rel @ frame.lat, rel @ frame.up
            area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
            if area <= 0.0:
                raise AssertionError("open hand construction: loop runs clockwise")
        angle = np.mod(np.arctan2(rel @ frame.up, rel @ frame.lat), 2.0 * np.pi)
        start = int(np.argmin(angle))
        loop = loop[start:] + loop[:start]
        p = np.roll(p, -start, axis=0)
        seg = np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1)
        t = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
        return loop, t + angle[start] / (2.0 * np.pi)

    def quad(self, a0: int, a1: int, b1: int, b0: int) -> None:
        """Two triangles of the quad a0 -> a1 (this loop) and b0 -> b1 (next loop)."""
        self.faces.append((a0, a1, b1))
        self.faces.append((a0, b1, b0))


@dataclass
class _Built:
    points: np.ndarray
    faces: np.ndarray
    chain: np.ndarray
    station: np.ndarray
    joints: np.ndarray
    regressor_sets: list[list[int]]
    hole_loop: list[int]
    tips: dict[str, tuple[int, int]]
    thumb_hole_station: float


def _finger_geometry(f: _Finger, shape: _Shape) -> tuple[float, float, float, tuple, float]:
    """Knuckle (u, z), direction angle, segment lengths, thickness factor for one finger."""
    length = shape.finger_length * shape.scale
    if f.name == "pinky":
        length *= shape.pinky_length
    if f.name == "index":
        length *= 1.0 + shape.index_vs_ring
    if f.name == "ring":
        length *= 1.0 - shape.index_vs_ring
    spread = {"index": 1.0, "middle": 0.2, "ring": -0.5, "pinky": -1.0}[f.name] * shape.spread
    u = f.mcp_u * shape.palm_length * shape.scale
    z = f.mcp_z * shape.palm_width * shape.scale
    return u, z, f.angle + spread, tuple(x * length for x in f.lengths), shape.thickness


def _build(shape: _Shape) -> _Built:
    mesh = _Mesh()
    s = shape.scale
    zmid = -0.003 * shape.palm_width * s

    # Wrist opening (the model's only boundary: 16 edges, like MANO) and a ring above it.
    wrist_frame = _PALM_FRAME
    wrist = mesh.add(
        _ellipse(_point(0.0, 0.0, zmid), wrist_frame, 0.029 * s * shape.palm_width,
                 0.0175 * s * shape.palm_thickness, 0.0185 * s * shape.palm_thickness, 16),
        -1, -1.0,
    )  # fmt: skip
    lower = mesh.add(
        _ellipse(_point(0.011 * s * shape.palm_length, 0.0, zmid), wrist_frame,
                 0.031 * s * shape.palm_width, 0.0172 * s * shape.palm_thickness,
                 0.0185 * s * shape.palm_thickness, 24),
        -1, -1.0,
    )  # fmt: skip

    fingers = [_finger_geometry(f, shape) for f in _FINGERS]
    # Column tiles at the knuckles: each finger owns the palm width up to the midpoints.
    mcp_z = np.array([g[1] for g in fingers])
    half_widths = np.array([f.half_width[0] for f in _FINGERS]) * s * shape.thickness
    edges = np.concatenate(
        [[mcp_z[0] + half_widths[0]], 0.5 * (mcp_z[:-1] + mcp_z[1:]), [mcp_z[-1] - half_widths[-1]]]
    )
    tile_centre = 0.5 * (edges[:-1] + edges[1:])
    tile_half = 0.5 * (edges[:-1] - edges[1:])
    u_base = 0.022 * s * shape.palm_length
    h_dorsal = np.array([0.0165, 0.0125]) * s * shape.palm_thickness
    h_palmar = np.array([0.0175, 0.0135]) * s * shape.palm_thickness

    body_offsets = np.array([0.8, 0.4, 0.0, -0.4, -0.8])
    knuckle_theta = np.deg2rad([18.0, 54.0, 90.0, 126.0, 162.0])
    knuckle_offsets = np.cos(knuckle_theta)
    knuckle_height = np.sin(knuckle_theta) ** 0.35

    rows: list[dict[int, int]] = []
    for r, v in enumerate(_PALM_V):
        narrow = 0.82 + 0.18 * v
        blend = v**3
        offsets = (1.0 - blend) * body_offsets + blend * knuckle_offsets
        slot_u, slot_z, slot_j = [], [], []
        for c, g in enumerate(fingers):
            centre = zmid + narrow * (tile_centre[c] - zmid)
            for j in range(5):
                slot_u.append(u_base + v * (g[0] - u_base))
                slot_z.append(centre + narrow * tile_half[c] * offsets[j])
                slot_j.append(j)
        slot_z = np.array(slot_z)
        zeta = (slot_z - zmid) / (np.max(np.abs(slot_z - zmid)) / 0.975)
        rounded = (1.0 - np.abs(zeta) ** 4) ** 0.25
        knuckle = knuckle_height[slot_j]
        hd = h_dorsal[0] + v * (h_dorsal[1] - h_dorsal[0])
        hp = h_palmar[0] + v * (h_palmar[1] - h_palmar[0])
        hypothenar = 1.0 + 0.15 * np.exp(-(((zeta + 0.7) / 0.25) ** 2)) * np.exp(
            -(((v - 0.35) / 0.3) ** 2)
        )
        top = hd * ((1.0 - 0.45 * v**4) * rounded + 0.45 * v**4 * knuckle)
        bottom = hp * hypothenar * ((1.0 - 0.25 * v**4) * rounded + 0.25 * v**4 * knuckle)
        row: dict[int, int] = {}
        for k in range(_PALM_SLOTS):
            finger = k // 5
            station = -(1.0 - v) * (fingers[finger][0] - u_base)
            for position, y in ((k, top[k]), (2 * _PALM_SLOTS - 1 - k, -bottom[k])):
                if r == _HOLE_ROWS[1] and position in _HOLE_POSITIONS[1:3]:
                    continue  # inside the thumb's opening
                row[position] = mesh.add(_point(slot_u[k], y, slot_z[k]), finger, station)[0]
        rows.append(row)

    # Junction ring: each finger's first ring, side by side; webs fill the gaps between them.
    finger_frames, finger_mcp = [], []
    junction: dict[int, int] = {}
    for c, (f, g) in enumerate(zip(_FINGERS, fingers, strict=True)):
        u, z, angle, lengths, thick = g
        axis = _direction(np.cos(angle), 0.0, np.sin(angle))
        up = _direction(0, 1, 0)
        frame = _Frame(np.cross(up, axis), up, axis)
        mcp = _point(u, 0.0, z)
        finger_frames.append(frame)
        finger_mcp.append(mcp)
        delta = 0.3 * lengths[0]
        ring = _ellipse(
            mcp + delta * axis, frame, *_finger_section(f, delta, lengths, thick, s), _RING
        )
        ids = mesh.add(ring, c, delta)
        for j in range(5):
            junction[5 * c + j] = ids[j]
            junction[2 * _PALM_SLOTS - 1 - (5 * c + j)] = ids[_RING - 1 - j]
    rows.append(junction)

    full_loop = [rows[0][p] for p in range(2 * _PALM_SLOTS)]
    mesh.zip(wrist, lower, wrist_frame)
    mesh.zip(lower, full_loop, wrist_frame)
    for r in range(len(rows) - 1):
        for p in range(2 * _PALM_SLOTS):
            q = (p + 1) % (2 * _PALM_SLOTS)
            if r in _HOLE_ROWS[:2] and p in _HOLE_POSITIONS[:3]:
                continue
            mesh.quad(rows[r][p], rows[r][q], rows[r + 1][q], rows[r + 1][p])
    for c in range(len(_FINGERS) - 1):
        d4, d5 = junction[5 * c + 4], junction[5 * c + 5]
        p4 = junction[2 * _PALM_SLOTS - 1 - (5 * c + 4)]
        p5 = junction[2 * _PALM_SLOTS - 1 - (5 * c + 5)]
        mesh.faces.append((d4, d5, p5))
        mesh.faces.append((d4, p5, p4))

    tips: dict[str, tuple[int, int]] = {}
    regressor_sets: list[list[int]] = [[] for _ in range(NUM_JOINTS)]
    joints = np.zeros((NUM_JOINTS, 3))
    regressor_sets[0] = wrist
    joints[0] = np.array([mesh.points[k] for k in wrist]).mean(axis=0)

    for c, (f, g) in enumerate(zip(_FINGERS, fingers, strict=True)):
        u, z, angle, lengths, thick = g
        frame, mcp = finger_frames[c], finger_mcp[c]
        base = [junction[5 * c + j] for j in range(5)] + [
            junction[2 * _PALM_SLOTS - 1 - (5 * c + j)] for j in reversed(range(5))
        ]
        l1, l2, l3 = lengths
        stations = [0.55 * l1, 0.8 * l1, l1, l1 + 0.35 * l2, l1 + 0.7 * l2, l1 + l2,
                    l1 + l2 + 0.35 * l3, l1 + l2 + 0.6 * l3, l1 + l2 + 0.8 * l3,
                    l1 + l2 + 0.93 * l3]  # fmt: skip
        previous = base
        ring_at: dict[float, list[int]] = {}
        for st in stations:
            ring = _ellipse(
                mcp + st * frame.axis, frame, *_finger_section(f, st, lengths, thick, s), _RING
            )
            ids = mesh.add(ring, c, st)
            ring_at[st] = ids
            mesh.zip(previous, ids, frame)
            previous = ids
        tip = mcp + (l1 + l2 + l3) * frame.axis
        apex = mesh.add(
            np.stack([tip + 0.0007 * s * frame.lat, tip - 0.0007 * s * frame.lat]), c, l1 + l2 + l3
        )
        mesh.zip(previous, apex, frame)
        tips[f.name] = (apex[0], apex[1])
        j1, j2, j3 = f.joints
        mcp_row = [rows[len(_PALM_V) - 1][5 * c + j] for j in range(5)] + [
            rows[len(_PALM_V) - 1][2 * _PALM_SLOTS - 1 - (5 * c + j)] for j in range(5)
        ]
        regressor_sets[j1], joints[j1] = mcp_row, mcp
        regressor_sets[j2], joints[j2] = ring_at[l1], mcp + l1 * frame.axis
        regressor_sets[j3], joints[j3] = ring_at[l1 + l2], mcp + (l1 + l2) * frame.axis

    # Thumb: a tube leaving the palm through the opening on the thumb side of the palm.
    hole = [rows[_HOLE_ROWS[0]][p] for p in _HOLE_POSITIONS]
    hole += [rows[_HOLE_ROWS[1]][0]]
    hole += [rows[_HOLE_ROWS[2]][p] for p in reversed(_HOLE_POSITIONS)]
    hole += [rows[_HOLE_ROWS[1]][_HOLE_POSITIONS[0]]]
    hole_points = np.array([mesh.points[k] for k in hole])
    hole_centre = hole_points.mean(axis=0)
    palm_side = [rows[r][p] for r in _HOLE_ROWS for p in (1, 2, 3, 4, 35, 36)]
    thumb_axis = _direction(0.718, -0.259, 0.646)
    nail = 0.55 * _direction(0, 1, 0) + 0.8 * _direction(-0.669, 0.0, 0.743)
    nail -= (nail @ thumb_axis) * thumb_axis
    up = nail / np.linalg.norm(nail)
    thumb_frame = _Frame(np.cross(up, thumb_axis), up, thumb_axis)
    palm_inward = _direction(0, 0.45, -1.0)
    cmc = hole_centre + 0.009 * s * palm_inward
    if np.dot(hole_centre - cmc, thumb_axis) <= 0.0:
        raise AssertionError("open hand construction: thumb must leave through its opening")
    loop_area_sign = _loop_area(hole_points, thumb_frame)
    if loop_area_sign < 0.0:
        hole = hole[::-1]
    hole_station = float((hole_centre - cmc) @ thumb_axis)
    for k in hole:
        mesh.chain[k] = 4
        mesh.station[k] = hole_station
    lm, lp, ld = (x * shape.thumb_length * s for x in _THUMB_LENGTHS)
    stations = [0.6 * lm, lm, lm + 0.35 * lp, lm + 0.7 * lp, lm + lp, lm + lp + 0.4 * ld,
                lm + lp + 0.65 * ld, lm + lp + 0.82 * ld, lm + lp + 0.94 * ld]  # fmt: skip
    previous = hole
    ring_at = {}
    for st in stations:
        section = _thumb_section(st, (lm, lp, ld), shape.thickness, s)
        ids = mesh.add(_ellipse(cmc + st * thumb_axis, thumb_frame, *section, _RING), 4, st)
        ring_at[st] = ids
        mesh.zip(previous, ids, thumb_frame)
        previous = ids
    tip = cmc + (lm + lp + ld) * thumb_axis
    apex = mesh.add(
        np.stack([tip + 0.0007 * s * thumb_frame.lat, tip - 0.0007 * s * thumb_frame.lat]),
        4, lm + lp + ld,
    )  # fmt: skip
    mesh.zip(previous, apex, thumb_frame)
    tips["thumb"] = (apex[0], apex[1])
    regressor_sets[13], joints[13] = hole + palm_side, cmc
    regressor_sets[14], joints[14] = ring_at[lm], cmc + lm * thumb_axis
    regressor_sets[15], joints[15] = ring_at[lm + lp], cmc + (lm + lp) * thumb_axis

    return _Built(
        points=np.array(mesh.points),
        faces=np.array(mesh.faces, dtype=np.int64),
        chain=np.array(mesh.chain),
        station=np.array(mesh.station),
        joints=joints,
        regressor_sets=regressor_sets,
        hole_loop=hole,
        tips=tips,
        thumb_hole_station=hole_station,
    )


def _loop_area(points: np.ndarray, frame: _Frame) -> float:
    rel = points - points.mean(axis=0)
    x, y = rel @ frame.lat, rel @ frame.up
    return float(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _dome(station: float, total: float, radius: float) -> float:
    """Cross-section factor rounding the last `radius` metres of a finger into a dome."""
    from_tip = total - station
    if from_tip >= radius:
        return 1.0
    x = (radius - from_tip) / radius
    return float(np.sqrt(max(0.0, 1.0 - x * x)))


def _finger_section(
    f: _Finger, station: float, lengths: tuple, thickness: float, scale: float
) -> tuple[float, float, float]:
    """Half-width, dorsal and palmar half-heights of a finger at `station` metres."""
    total = sum(lengths)
    t = np.clip(station / total, 0.0, 1.0)
    knuckles = (lengths[0], lengths[0] + lengths[1])
    bulge = 1.0 + sum(0.06 * np.exp(-(((station - k) / (0.12 * total)) ** 2)) for k in knuckles)
    factor = thickness * scale * bulge * _dome(station, total, 0.9 * f.half_width[1] * scale)
    return tuple(
        factor * (pair[0] + t * (pair[1] - pair[0])) for pair in (f.half_width, f.dorsal, f.palmar)
    )


def _thumb_section(
    station: float, lengths: tuple, thickness: float, scale: float
) -> tuple[float, float, float]:
    """Half-width, dorsal and palmar half-heights of the thumb at `station` metres."""
    total = sum(lengths)
    t = np.clip((station - 0.6 * lengths[0]) / (total - 0.6 * lengths[0]), 0.0, 1.0)
    # Thicker towards the palm: the thenar mass around the thumb's metacarpal.
    base = 1.0 + 0.3 * float(np.clip((lengths[0] - station) / (0.4 * lengths[0]), 0.0, 1.0))
    bulge = 1.0 + 0.05 * np.exp(-(((station - lengths[0] - lengths[1]) / 0.01) ** 2))
    factor = thickness * scale * base * bulge * _dome(station, total, 0.0085 * scale)
    return (
        factor * (0.0118 + t * (0.0098 - 0.0118)),
        factor * (0.0095 + t * (0.0080 - 0.0095)),
        factor * (0.0110 + t * (0.0092 - 0.0110)),
    )


def _vertex_order(built: _Built) -> np.ndarray:
    """Build-order index of each final vertex: fingertips moved to the release's indices."""
    targets = {
        TIP_VERTICES["thumb"]: built.tips["thumb"][0],
        TIP_VERTICES["index"]: built.tips["index"][0],
        TIP_VERTICES["middle"]: built.tips["middle"][0],
        MIDDLE_TIP_LEFT: built.tips["middle"][1],
        TIP_VERTICES["ring"]: built.tips["ring"][0],
        TIP_VERTICES["pinky"]: built.tips["pinky"][0],
    }
    placed = set(targets.values())
    rest = iter(k for k in range(len(built.points)) if k not in placed)
    return np.array([targets[i] if i in targets else next(rest) for i in range(len(built.points))])


def _regressor(points: np.ndarray, sets: list[list[int]], joints: np.ndarray) -> np.ndarray:
    """Non-negative rows, near uniform over each set, reproducing each joint exactly."""
    regressor = np.zeros((len(sets), len(points)))
    for j, ids in enumerate(sets):
        active = list(ids)
        while True:
            a = np.vstack([points[active].T, np.ones(len(active))])
            uniform = np.full(len(active), 1.0 / len(active))
            target = np.append(joints[j], 1.0)
            w = uniform + np.linalg.pinv(a) @ (target - a @ uniform)
            if not np.allclose(a @ w, target, rtol=0.0, atol=1e-9) or len(active) < 4:
                raise AssertionError(f"open hand construction: joint {j} outside its vertices")
            if w.min() >= 0.0:
                break
            # Drop the vertex pulling hardest the wrong way and solve again.
            active.pop(int(np.argmin(w)))
        regressor[j, active] = w
    return regressor


def _skinning(built: _Built) -> np.ndarray:
    """Smooth linear-blend weights (V, 16): each chain blends into the next joint's bone."""
    n = len(built.points)
    weights = np.zeros((n, NUM_JOINTS))
    for k in range(n):
        c, st = built.chain[k], built.station[k]
        if c < 0:
            weights[k, 0] = 1.0
            continue
        joints = _FINGERS[c].joints if c < 4 else _THUMB_JOINTS
        first = np.linalg.norm(built.joints[joints[1]] - built.joints[joints[0]])
        second = np.linalg.norm(built.joints[joints[2]] - built.joints[joints[1]])
        if c < 4:
            bounds = (0.0, first, first + second)
            halves = (0.010, 0.007, 0.006)
        else:
            bounds = (built.thumb_hole_station, first, first + second)
            halves = (0.008, 0.007, 0.006)
        steps = [
            float(_smoothstep((st - b + h) / (2.0 * h)))
            for b, h in zip(bounds, halves, strict=True)
        ]
        weights[k, 0] = 1.0 - steps[0]
        weights[k, joints[0]] = steps[0] - steps[1]
        weights[k, joints[1]] = steps[1] - steps[2]
        weights[k, joints[2]] = steps[2]
    # The thenar region around the thumb's opening follows the thumb's base joint in part.
    hole = built.points[built.hole_loop]
    for k in range(n):
        if built.chain[k] == 4:
            continue
        distance = np.min(np.linalg.norm(hole - built.points[k], axis=1))
        share = 0.5 * max(0.0, 1.0 - distance / 0.03) ** 2
        weights[k, _THUMB_JOINTS[0]] += share * weights[k, 0]
        weights[k, 0] *= 1.0 - share
    return weights


@functools.cache
def _right_hand_arrays() -> dict[str, np.ndarray]:
    """The right model's arrays (built once per process: about 20 builds for the shape basis)."""
    built = _build(_Shape())
    order = _vertex_order(built)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    points = built.points[order]
    faces = inverse[built.faces]
    sets = [list(inverse[ids]) for ids in built.regressor_sets]
    regressor = _regressor(points, sets, built.joints)
    weights = _skinning(built)[order]

    shapedirs = np.zeros((NUM_VERTICES, 3, len(_BETA_STEPS)))
    base = _Shape()
    eps = 1e-4
    for b, (name, step) in enumerate(_BETA_STEPS):
        value = getattr(base, name)
        plus = _build(dataclasses.replace(base, **{name: value + eps})).points[order]
        minus = _build(dataclasses.replace(base, **{name: value - eps})).points[order]
        shapedirs[:, :, b] = (plus - minus) / (2.0 * eps) * step

    return {
        "v_template": points.astype(np.float32),
        "f": faces.astype(np.uint32),
        "J_regressor": regressor.astype(np.float32),
        "kintree_table": np.array([MANO_PARENTS, range(NUM_JOINTS)], dtype=np.int64),
        "weights": weights.astype(np.float32),
        "posedirs": np.zeros((NUM_VERTICES, 3, 9 * (NUM_JOINTS - 1)), dtype=np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "hands_components": np.eye(3 * (NUM_JOINTS - 1), dtype=np.float32),
        "hands_mean": np.zeros(3 * (NUM_JOINTS - 1), dtype=np.float32),
    }


def build_open_hand(is_right: bool) -> dict[str, np.ndarray]:
    """Build the open hand model in MANO's pkl layout (metres; arrays named as in MANO).

    Keys: v_template (778, 3), f (1538, 3), J_regressor (16, 778), kintree_table (2, 16),
    weights (778, 16), posedirs (778, 3, 135) all zero, shapedirs (778, 3, 10),
    hands_components (45, 45) identity, hands_mean (45,) zero, open_hand_version (1,).
    The left hand mirrors the right in x, with the triangle winding flipped.
    """
    data = {key: value.copy() for key, value in _right_hand_arrays().items()}
    if not is_right:
        mirror = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
        data["v_template"] = data["v_template"] * mirror
        data["shapedirs"] = data["shapedirs"] * mirror[None, :, None]
        data["f"] = data["f"][:, [0, 2, 1]].copy()
    data["open_hand_version"] = np.array([OPEN_HAND_VERSION], dtype=np.int64)
    return data


def write_open_hand_model(directory: Path) -> None:
    """Write MANO_RIGHT.pkl and MANO_LEFT.pkl of the open hand model into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for side, is_right in (("RIGHT", True), ("LEFT", False)):
        with (directory / f"MANO_{side}.pkl").open("wb") as handle:
            pickle.dump(build_open_hand(is_right), handle, protocol=4)


def open_hand_directory() -> Path:
    """The directory of the shipped open hand model files (MANO_RIGHT.pkl, MANO_LEFT.pkl)."""
    return Path(__file__).resolve().parent / "data" / "open_hand"
