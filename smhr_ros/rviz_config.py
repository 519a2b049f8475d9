"""RViz configuration for the hands node's launch file.

`config/hands.rviz` shows the camera image and the hand markers. The topics and the fixed frame
in it are placeholders; `write_rviz_config` writes a copy with the topics of one launch (image
topic, the node's namespace) so the shipped file works with any camera.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

IMAGE_DISPLAY = "rviz_default_plugins/Image"
MARKER_ARRAY_DISPLAY = "rviz_default_plugins/MarkerArray"


def params_file_value(params_file: str | Path, node_name: str, key: str) -> Any | None:
    """The value of parameter `key` for `node_name` (or the '/**' wildcard) in a params file."""
    data = yaml.safe_load(Path(params_file).read_text()) or {}
    for name in (node_name, f"/{node_name}", "/**"):
        parameters = (data.get(name) or {}).get("ros__parameters") or {}
        if key in parameters:
            return parameters[key]
    return None


def output_topic(namespace: str, name: str) -> str:
    """Absolute name of the node's relative output `name` under `namespace`."""
    namespace = namespace.strip("/")
    return f"/{namespace}/{name}" if namespace else f"/{name}"


def _displays(config: dict[str, Any], display_class: str) -> list[dict[str, Any]]:
    displays = config["Visualization Manager"]["Displays"]
    found = [d for d in displays if d.get("Class") == display_class]
    if not found:
        raise ValueError(f"RViz config has no {display_class} display")
    return found


def write_rviz_config(
    template: str | Path,
    image_topic: str,
    markers_topic: str,
    fixed_frame: str,
    directory: str | Path | None = None,
) -> Path:
    """Copy of the RViz config `template` showing `image_topic` and `markers_topic` in
    `fixed_frame` (the camera's optical frame); written to `directory` (default: a new temporary
    directory). Returns the path of the copy."""
    config = yaml.safe_load(Path(template).read_text())
    for display in _displays(config, IMAGE_DISPLAY):
        display["Topic"]["Value"] = image_topic
    for display in _displays(config, MARKER_ARRAY_DISPLAY):
        display["Topic"]["Value"] = markers_topic
    config["Visualization Manager"]["Global Options"]["Fixed Frame"] = fixed_frame
    out_dir = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="smhr_rviz_"))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "hands.rviz"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
