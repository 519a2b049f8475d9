"""Where the installed smhr_ros share files (launch/, config/) are.

In a ROS workspace (AMENT_PREFIX_PATH set) the share directory is found through the ament
resource index, as `ament_index_python` does: the first prefix with
`share/ament_index/resource_index/packages/smhr_ros`. After `pip install` it is
`<sys.prefix>/share/smhr_ros`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "smhr_ros"


def _ament_prefixes() -> list[Path]:
    value = os.environ.get("AMENT_PREFIX_PATH", "")
    return [Path(p) for p in value.split(os.pathsep) if p]


def share_directory() -> Path:
    """The share directory of smhr_ros; raises FileNotFoundError naming the places searched."""
    searched = []
    for prefix in _ament_prefixes():
        marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
        searched.append(str(marker))
        if marker.is_file():
            return prefix / "share" / PACKAGE
    fallback = Path(sys.prefix) / "share" / PACKAGE
    searched.append(str(fallback))
    if fallback.is_dir():
        return fallback
    raise FileNotFoundError(
        f"share directory of {PACKAGE} not found; searched: {', '.join(searched)}"
    )


def share_file(*parts: str) -> Path:
    """A file under the share directory, e.g. `share_file("config", "hands.yaml")`."""
    path = share_directory().joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (is smhr_ros installed completely?)")
    return path
