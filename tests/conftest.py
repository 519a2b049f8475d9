"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture
def ros_env(tmp_path: Path, worker_domain_id: int) -> dict[str, str]:
    """Environment for ROS child processes: own domain, loopback discovery, own log dir."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(worker_domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    log_dir = tmp_path / "ros_log"
    log_dir.mkdir()
    env["ROS_LOG_DIR"] = str(log_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


_next_domain = [0]


@pytest.fixture
def worker_domain_id() -> int:
    """A ROS domain id no other test of this run uses (ids 110-229 stay within Fast DDS ports)."""
    base = int(os.environ.get("SMHR_TEST_DOMAIN_BASE", 110 + (os.getpid() % 4) * 30))
    _next_domain[0] += 1
    return base + (_next_domain[0] % 30)


@pytest.fixture
def python() -> str:
    """The interpreter for child processes (the same venv as the tests)."""
    return sys.executable
