"""Legacy entry point: `python setup.py install` / `python setup.py bdist_wheel`.

The package is built by CMake (the ROS interface messages need `rosidl_generate_interfaces`,
which only exists for ament_cmake packages) driven by scikit-build-core, as declared in
pyproject.toml. Tools that still call setup.py directly are forwarded to the same PEP 517 build
through pip, so both ways produce the same installation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

COMMANDS = {
    "install": ["install", "."],
    "bdist_wheel": ["wheel", "--no-deps", "-w", "dist", "."],
    "build": ["wheel", "--no-deps", "-w", "dist", "."],
}


def main(argv: list[str]) -> int:
    """Run the pip command matching a setup.py command; returns the exit code."""
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python setup.py {{{'|'.join(COMMANDS)}}} [pip options]", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "pip", *COMMANDS[argv[0]], *argv[1:]]
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
