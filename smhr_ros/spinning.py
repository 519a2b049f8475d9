"""Spinning a node until its work is done or the process is told to stop (SIGINT, SIGTERM).

rclpy's signal handler shuts the context down from whichever point the main thread is at. When
that point lies between the executor's context check and the building of its wait set, rclpy
raises `RCLError` ("the given context is not valid") instead of `ExternalShutdownException`.
`ros2 launch` stops nodes with SIGINT/SIGTERM, so every node spins through `spin_until`: a stop
request ends the loop the same way wherever it lands, and the node exits with its own code.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node


def _never() -> bool:
    return False


def spin_until(node: Node, done: Callable[[], bool] = _never, poll_s: float = 0.1) -> bool:
    """Run `node`'s callbacks until `done()` is true or its context shuts down.

    `done` is checked at least every `poll_s` seconds. Returns True when `done()` ended the
    loop, False when the context was shut down (a signal or `rclpy.shutdown`). An `RCLError`
    while the context is still valid is a real failure and propagates.
    """
    context = node.context
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while context.ok():
            if done():
                return True
            executor.spin_once(timeout_sec=poll_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        return False
    except _rclpy.RCLError:
        if context.ok():
            raise
        return False
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0)
    return False
