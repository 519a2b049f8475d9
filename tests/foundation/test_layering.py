"""Dependency arrows point one way: smhr_ros and training use smhr_core, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import smhr_core

FORBIDDEN_IN_CORE = {"rclpy", "smhr_ros", "training", "launch", "launch_ros", "cv_bridge"}
GRAB_BAG_NAMES = {"utils", "util", "misc", "helpers", "common"}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_smhr_core_imports_no_ros_and_no_training() -> None:
    core = Path(smhr_core.__file__).parent
    sources = sorted(core.rglob("*.py"))
    assert len(sources) > 3
    offenders = {
        str(path.relative_to(core)): sorted(_imported_top_levels(path) & FORBIDDEN_IN_CORE)
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_grab_bag_modules() -> None:
    import smhr_ros
    import training

    for package in (smhr_core, smhr_ros, training):
        root = Path(package.__file__).parent
        stems = {p.stem for p in root.rglob("*.py")} | {
            p.name for p in root.rglob("*") if p.is_dir()
        }
        assert not stems & GRAB_BAG_NAMES, f"{package.__name__}: {stems & GRAB_BAG_NAMES}"
