"""How nodes spin: until their work is done, or until a stop request lands anywhere in the loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from smhr_ros.spinning import spin_until


@pytest.fixture
def node(worker_domain_id: int) -> Iterator[Node]:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=worker_domain_id)
    node = Node("spinning_probe", context=context)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_runs_callbacks_until_done(node: Node) -> None:
    ticks: list[int] = []
    node.create_timer(0.01, lambda: ticks.append(1))
    assert spin_until(node, lambda: len(ticks) >= 5, poll_s=0.01) is True
    assert len(ticks) >= 5
    assert node.context.ok()


def test_a_shutdown_from_a_callback_ends_the_loop(node: Node) -> None:
    node.create_timer(0.01, lambda: node.context.try_shutdown())
    assert spin_until(node, poll_s=0.01) is False
    assert not node.context.ok()


def test_a_shutdown_just_before_the_wait_set_is_built_ends_the_loop(node: Node) -> None:
    # Where a SIGTERM can land: after the loop saw a valid context, before rclpy builds its wait
    # set. rclpy then raises RCLError ("the given context is not valid"), not a shutdown exception.
    def shut_down_and_carry_on() -> bool:
        node.context.try_shutdown()
        return False

    assert spin_until(node, shut_down_and_carry_on, poll_s=0.01) is False
    assert not node.context.ok()


def test_an_rcl_error_on_a_valid_context_propagates(node: Node) -> None:
    def fail() -> None:
        raise _rclpy.RCLError("publisher failed")

    node.create_timer(0.01, fail)
    with pytest.raises(_rclpy.RCLError, match="publisher failed"):
        spin_until(node, poll_s=0.01)
    assert node.context.ok()
