"""RViz markers: valid geometry, stable ids, deletion of vanished hands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from smhr_ros.markers import BONES, HandMarkers, MarkerStyle


def _by_key(array) -> dict[tuple[str, int], Marker]:
    return {(m.ns, m.id): m for m in array.markers}


def test_bones_cover_the_21_joints_as_a_tree() -> None:
    assert len(BONES) == 20
    assert sorted(child for _, child in BONES) == list(range(1, 21))
    assert all(parent < child for parent, child in BONES)


def test_markers_of_one_hand_are_valid(make_hand) -> None:
    hand = make_hand((0.0, 0.0, 0.6), is_right=False, score=0.87)
    header = Header(frame_id="camera_optical_frame")
    style = MarkerStyle(lifetime_s=0.25)
    array = HandMarkers().build(header, [hand], [4], style)
    markers = _by_key(array)
    assert set(markers) == {("mesh", 4), ("skeleton", 4), ("joints", 4), ("label", 4)}
    mesh = markers[("mesh", 4)]
    assert mesh.type == Marker.TRIANGLE_LIST and len(mesh.points) == 1538 * 3
    assert (mesh.color.r, mesh.color.g, mesh.color.b) == tuple(np.float32(style.left_rgba[:3]))
    assert markers[("skeleton", 4)].type == Marker.LINE_LIST
    assert len(markers[("skeleton", 4)].points) == 40
    assert markers[("joints", 4)].type == Marker.SPHERE_LIST
    assert len(markers[("joints", 4)].points) == 21
    label = markers[("label", 4)]
    assert label.type == Marker.TEXT_VIEW_FACING and label.text == "4 left 0.87"
    assert label.pose.position.y < hand.joints_m[:, 1].min()
    for marker in array.markers:
        assert marker.header.frame_id == "camera_optical_frame"
        assert marker.action == Marker.ADD
        assert (marker.lifetime.sec, marker.lifetime.nanosec) == (0, 250_000_000)
        values = [c for p in marker.points for c in (p.x, p.y, p.z)]
        assert all(math.isfinite(v) for v in values)
    first = mesh.points[0]
    v = hand.vertices_m[hand.faces[0, 0]]
    assert (first.x, first.y, first.z) == tuple(float(c) for c in v)


def test_right_hands_get_the_right_colour_and_hands_without_mesh_skip_it(make_hand) -> None:
    style = MarkerStyle(right_rgba=(0.0, 1.0, 0.0, 1.0))
    hand = make_hand(is_right=True, with_vertices=False)
    markers = _by_key(HandMarkers().build(Header(), [hand], [1], style))
    assert ("mesh", 1) not in markers
    assert markers[("joints", 1)].color.g == 1.0 and markers[("joints", 1)].color.r == 0.0


def test_vanished_hands_are_deleted_once(make_hand) -> None:
    builder = HandMarkers()
    style = MarkerStyle()
    a, b = make_hand((-0.1, 0.0, 0.6)), make_hand((0.1, 0.0, 0.6), is_right=False)
    builder.build(Header(), [a, b], [1, 2], style)
    second = builder.build(Header(), [a], [1], style)
    deletes = sorted((m.ns, m.id) for m in second.markers if m.action == Marker.DELETE)
    assert deletes == [("joints", 2), ("label", 2), ("mesh", 2), ("skeleton", 2)]
    third = builder.build(Header(), [a], [1], style)
    assert all(m.action == Marker.ADD for m in third.markers)
    empty = builder.build(Header(), [], [], style)
    assert {(m.ns, m.id, m.action) for m in empty.markers} == {
        (ns, 1, Marker.DELETE) for ns in ("mesh", "skeleton", "joints", "label")
    }


def test_keys_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        HandMarkers().build(Header(), [], [1], MarkerStyle())
