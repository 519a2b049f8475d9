"""RViz markers for reconstructed hands (visualization_msgs/MarkerArray).

Per hand, four markers share one id (the hand's key: its track id, or its index in the image when
tracking is off) in four namespaces:
- `mesh`: TRIANGLE_LIST of the hand mesh, coloured by handedness;
- `skeleton`: LINE_LIST of the 20 bones;
- `joints`: SPHERE_LIST of the 21 joints;
- `label`: TEXT_VIEW_FACING "<id> <side> <score>" above the hand.
All are in the image's frame (the camera's optical frame) with its stamp. Markers of a hand that
was shown in the previous message but not in this one are deleted (DELETE), and every marker has
a lifetime, so RViz shows no ghosts even if the node stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from smhr_core.results import Hand, Handedness

BONES = tuple(
    (0 if finger_joint == 0 else base + finger_joint - 1, base + finger_joint)
    for base in (1, 5, 9, 13, 17)
    for finger_joint in range(4)
)
"""The 20 bones of the FreiHAND joint order as (parent, child) joint indices."""

NAMESPACES = ("mesh", "skeleton", "joints", "label")


@dataclass(frozen=True)
class MarkerStyle:
    """Colours (r, g, b, a in [0, 1]) and sizes (metres) of the markers."""

    left_rgba: tuple[float, float, float, float] = (0.2, 0.6, 1.0, 0.8)
    right_rgba: tuple[float, float, float, float] = (1.0, 0.45, 0.2, 0.8)
    skeleton_rgba: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    lifetime_s: float = 0.5
    """0: markers stay until deleted."""
    joint_diameter_m: float = 0.012
    line_width_m: float = 0.004
    text_height_m: float = 0.02


def _color(rgba: Sequence[float]) -> ColorRGBA:
    r, g, b, a = (float(c) for c in rgba)
    return ColorRGBA(r=r, g=g, b=b, a=a)


def _points(xyz: np.ndarray) -> list[Point]:
    return [Point(x=x, y=y, z=z) for x, y, z in np.asarray(xyz, dtype=np.float64).tolist()]


def _lifetime(seconds: float) -> Duration:
    whole = int(seconds)
    return Duration(sec=whole, nanosec=min(round((seconds - whole) * 1e9), 999_999_999))


def _base(header: Header, namespace: str, key: int, kind: int, style: MarkerStyle) -> Marker:
    return Marker(
        header=header,
        ns=namespace,
        id=key,
        type=kind,
        action=Marker.ADD,
        pose=Pose(orientation=Quaternion(w=1.0)),
        scale=Vector3(x=1.0, y=1.0, z=1.0),
        lifetime=_lifetime(style.lifetime_s),
    )


def hand_markers(header: Header, hand: Hand, key: int, style: MarkerStyle) -> list[Marker]:
    """The markers of one hand (mesh only when it has vertices)."""
    side = "right" if hand.handedness == Handedness.RIGHT else "left"
    hand_color = _color(style.right_rgba if side == "right" else style.left_rgba)
    skeleton_color = _color(style.skeleton_rgba)
    markers = []
    if hand.vertices_m is not None:
        vertices = _points(hand.vertices_m)
        mesh = _base(header, "mesh", key, Marker.TRIANGLE_LIST, style)
        mesh.color = hand_color
        mesh.points = [vertices[i] for i in np.asarray(hand.faces).reshape(-1).tolist()]
        markers.append(mesh)
    joints = _points(hand.joints_m)
    skeleton = _base(header, "skeleton", key, Marker.LINE_LIST, style)
    skeleton.scale = Vector3(x=style.line_width_m, y=0.0, z=0.0)
    skeleton.color = skeleton_color
    skeleton.points = [joints[i] for bone in BONES for i in bone]
    markers.append(skeleton)
    spheres = _base(header, "joints", key, Marker.SPHERE_LIST, style)
    d = style.joint_diameter_m
    spheres.scale = Vector3(x=d, y=d, z=d)
    spheres.color = hand_color
    spheres.points = joints
    markers.append(spheres)
    label = _base(header, "label", key, Marker.TEXT_VIEW_FACING, style)
    # Above the hand: the optical frame's y axis points down.
    top = hand.joints_m.astype(np.float64)
    label.pose.position = Point(
        x=float(top[:, 0].mean()),
        y=float(top[:, 1].min()) - 2.0 * style.text_height_m,
        z=float(top[:, 2].mean()),
    )
    label.scale = Vector3(x=0.0, y=0.0, z=style.text_height_m)
    label.color = skeleton_color
    label.text = f"{key} {side} {hand.score:.2f}"
    markers.append(label)
    return markers


class HandMarkers:
    """Builds successive MarkerArrays for one camera and deletes markers of vanished hands."""

    def __init__(self) -> None:
        self._shown: set[tuple[str, int]] = set()

    def build(
        self, header: Header, hands: Sequence[Hand], keys: Sequence[int], style: MarkerStyle
    ) -> MarkerArray:
        """Markers for `hands` (one key per hand, unique in this image) plus the deletions."""
        if len(set(keys)) != len(keys) or len(keys) != len(hands):
            raise ValueError(f"keys: need one unique key per hand, got {list(keys)}")
        array = MarkerArray()
        for hand, key in zip(hands, keys, strict=True):
            array.markers.extend(hand_markers(header, hand, int(key), style))
        shown = {(m.ns, m.id) for m in array.markers}
        for namespace, key in sorted(self._shown - shown):
            array.markers.append(Marker(header=header, ns=namespace, id=key, action=Marker.DELETE))
        self._shown = shown
        return array
