"""hands_node refuses to start on a bad checkpoint, hand model, parameter or a precision the
device cannot run: one line, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def _params_file(tmp_path: Path, name: str, parameters: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"hands_node": {"ros__parameters": parameters}}))
    return path


def test_bad_start_conditions_give_one_error_line_and_exit_code_1(
    tmp_path: Path, random_checkpoint: Path, ros_env: dict[str, str]
) -> None:
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("this is not a checkpoint")
    empty_dir = tmp_path / "no_hand_model"
    empty_dir.mkdir()
    good = {"checkpoint": str(random_checkpoint), "device": "cpu", "torch_threads": 1}
    cases = {
        "missing_checkpoint": ({"checkpoint": str(tmp_path / "absent.pth")}, "absent.pth"),
        "invalid_checkpoint": ({"checkpoint": str(not_a_checkpoint)}, "notes.pth"),
        "missing_hand_model": ({**good, "hand_model_dir": str(empty_dir)}, "MANO_RIGHT.pkl"),
        "invalid_parameter": ({**good, "max_hands": 0}, "'max_hands'"),
        "float16_on_cpu": ({**good, "precision": "float16"}, "use bfloat16 on a CPU"),
    }
    # The installed console script, as `ros2 run` / `hands_node` would start it.
    script = Path(sys.executable).parent / "hands_node"
    assert script.is_file(), f"console script {script} is not installed"
    processes = {}
    for name, (parameters, _) in cases.items():
        params = _params_file(tmp_path, name, parameters)
        command = (
            [str(script)]
            if name == "missing_checkpoint"
            else [
                sys.executable,
                "-c",
                "import sys; from smhr_ros.hands_node import main; sys.exit(main())",
            ]
        )
        processes[name] = subprocess.Popen(
            [*command, "--ros-args", "--params-file", str(params)],
            cwd=tmp_path,
            env=ros_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        words = cases[name][1]
        assert process.returncode == 1, f"{name}: exit {process.returncode}\n{out}\n{err}"
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"{name}: expected one error line, got:\n{err}"
        assert "cannot start" in lines[0] and words in lines[0], f"{name}: {lines[0]}"
