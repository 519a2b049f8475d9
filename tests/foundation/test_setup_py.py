"""`python setup.py bdist_wheel` goes through the same CMake build as pip: the wheel carries the
generated messages, their libraries, the launch and parameter files and the default model."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_setup_py_builds_the_complete_wheel(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "setup.py", "bdist_wheel", "--no-build-isolation", "-w", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = tmp_path.glob("smhr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "smhr-0.1.0.data/data/"
    site = f"{data}lib/python3.{sys.version_info.minor}/site-packages/"
    for expected in (
        f"{site}smhr_ros/msg/_hand_array.py",
        f"{site}smhr_ros/hands_node.py",
        f"{site}smhr_core/predictor.py",
        f"{site}smhr_core/data/default_model.pth",
        f"{site}training/trainer.py",
        f"{data}lib/libsmhr_ros__rosidl_typesupport_c.so",
        f"{data}share/smhr_ros/launch/hands.launch.py",
        f"{data}share/smhr_ros/config/hands.yaml",
    ):
        assert expected in names, expected
    assert not any(name.endswith(".c") for name in names)


def test_setup_py_names_its_commands() -> None:
    result = subprocess.run(
        [sys.executable, "setup.py", "develop"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "install|bdist_wheel|build" in result.stderr
