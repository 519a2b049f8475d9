"""The demo: the whole ROS loop on the embedded default model, finishing by itself.

    python -m smhr_ros.demo [--frames 48] [--rate 10] [--source demo] [--out DIR]
                            [--device cpu] [--precision bfloat16] [--checkpoint PATH]
                            [--hand-model DIR]

(`scripts/run.sh demo [args]` sets up the environment and runs this.) Three nodes run as child
processes of this one: `camera_node` publishes the source (by default the bundled sequence of
synthetic hands, looped) on /camera/image_raw + /camera/camera_info; `hands_node` reconstructs
the hands with the checkpoint and hand model (by default the embedded model and the open hand
model) and publishes /hands and /overlay; `recorder_node` writes the overlays and summary.json
to the output folder and prints one line per frame. When the recorder has its frames, the other
two are stopped (SIGINT, then SIGKILL after a grace period) and a summary is printed.

ROS settings: the children get this process's ROS_DOMAIN_ID, or their own one when it is not
set, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set, and ROS_LOG_DIR under the output
folder; each child's console output goes to `<out>/logs/<node>.log`. If a child fails, the demo
says which, shows the end of its log, stops the others and exits with code 1.

launch_ros is not installable from PyPI, so this orchestrates with subprocess; with a ROS
installation, `ros2 launch smhr_ros demo.launch.py` runs the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from smhr_core.config import PRECISIONS
from smhr_ros.frame_sources import DEMO_SOURCE

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
HANDS_TOPIC = "/hands"
OVERLAY_TOPIC = "/overlay"
STOP_GRACE_S = 5.0
"""How long a child may take to exit after SIGINT before it is killed."""
STARTUP_TIMEOUT_S = 300.0
"""How long the recorder waits for the first frame (the hands node loads the model first)."""
IDLE_TIMEOUT_S = 20.0
"""How long the recorder waits for further frames once frames flow."""
_LOG_TAIL_LINES = 15
_POLL_S = 0.2


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def default_output_dir() -> Path:
    """./outputs/demo-<date>-<time> (local time)."""
    return Path("outputs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"


def _yaml_string(value: str) -> str:
    # ROS parses `-p name:=value` as YAML: quote strings so "0" or "true" stay strings.
    return "'" + value.replace("'", "''") + "'"


def _ros_args(parameters: dict[str, Any]) -> list[str]:
    args = ["--ros-args"]
    for name, value in parameters.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = _yaml_string(value)
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        args += ["-p", f"{name}:={text}"]
    return args


def node_command(module: str, parameters: dict[str, Any]) -> list[str]:
    """The command line that runs `smhr_ros.<module>.main()` with ROS parameters."""
    code = f"import sys; from smhr_ros.{module} import main; sys.exit(main())"
    return [sys.executable, "-c", code, *_ros_args(parameters)]


def child_environment(output_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the nodes: own domain unless set, loopback discovery, logs in output."""
    env = dict(os.environ if base is None else base)
    if not env.get("ROS_DOMAIN_ID"):
        # Fast DDS maps domain ids up to 232 to ports; 1-100 keeps clear of the common 0.
        env["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["ROS_LOG_DIR"] = str(output_dir / "ros_log")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    """One running node."""

    name: str
    process: subprocess.Popen
    log_path: Path
    log: IO[str]

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of its log."""
        self.log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


def _start(
    name: str, command: list[str], env: dict[str, str], logs: Path, show_stdout: bool = False
) -> Child:
    log_path = logs / f"{name}.log"
    log = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=None if show_stdout else log,
        stderr=log,
        # Own session: a Ctrl-C in the terminal reaches only the demo, which stops the nodes
        # in order.
        start_new_session=True,
    )
    return Child(name, process, log_path, log)


def stop(children: Sequence[Child], grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT every running child, wait up to `grace_s`, then SIGKILL what is left."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.log.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m smhr_ros.demo",
        description="Run camera_node -> hands_node -> recorder_node until the recorder has "
        "its frames, then print where the overlays and summary.json are.",
    )
    parser.add_argument(
        "--frames", type=int, default=48, help="frames to record (default: 48, the demo length)"
    )
    parser.add_argument(
        "--rate", type=float, default=10.0, help="camera frames per second (default: 10)"
    )
    parser.add_argument(
        "--source",
        default=DEMO_SOURCE,
        help="'demo' (bundled synthetic sequence, default), a video file, an image folder, "
        "/dev/videoN or a device number",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: ./outputs/demo-<time>)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device for the hands node: auto (CUDA when available), cpu, cuda, cuda:N",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the hands node's network precision: auto (float16 on CUDA, else float32), "
        "float32, bfloat16, float16",
    )
    parser.add_argument(
        "--checkpoint", default="", help="network checkpoint (default: the embedded model)"
    )
    parser.add_argument(
        "--hand-model",
        default="",
        help="directory with MANO_RIGHT.pkl and MANO_LEFT.pkl (default: the open hand model)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="give up after this many seconds (default: 900)",
    )
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")
    if not 0.0 < args.rate <= 1000.0:
        parser.error(f"--rate must be in (0, 1000] frames per second, got {args.rate}")
    if args.timeout <= 0.0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    return args


def node_commands(args: argparse.Namespace, output_dir: Path) -> dict[str, list[str]]:
    """The three nodes' command lines, in start order (hands node first: it loads longest)."""
    hands: dict[str, Any] = {
        "image_topics": [IMAGE_TOPIC],
        "publish_overlay": True,
        "device": args.device,
        "precision": args.precision,
        "checkpoint": str(Path(args.checkpoint).absolute()) if args.checkpoint else "",
        "hand_model_dir": str(Path(args.hand_model).absolute()) if args.hand_model else "",
    }
    hands_args = node_command("hands_node", {k: v for k, v in hands.items() if k != "image_topics"})
    hands_args += ["-p", f"image_topics:=[{_yaml_string(IMAGE_TOPIC)}]"]
    recorder = {
        "hands_topic": HANDS_TOPIC,
        "overlay_topic": OVERLAY_TOPIC,
        "output_dir": str(output_dir),
        "max_frames": args.frames,
        "startup_timeout_s": STARTUP_TIMEOUT_S,
        "idle_timeout_s": IDLE_TIMEOUT_S,
    }
    camera = {
        "source": args.source,
        "rate_hz": float(args.rate),
        "loop": True,
        "image_topic": IMAGE_TOPIC,
        "camera_info_topic": CAMERA_INFO_TOPIC,
        # Wait for the hands node, so that the first frames are not published to nobody.
        "wait_for_subscribers": 1,
    }
    return {
        "hands_node": hands_args,
        "recorder_node": node_command("recorder_node", recorder),
        "camera_node": node_command("camera_node", camera),
    }


def _report_failure(child: Child, what: str) -> None:
    _say(f"{child.name} {what}; last lines of {child.log_path}:")
    for line in child.tail().splitlines():
        print(f"    {line}", flush=True)


def _print_summary(output_dir: Path) -> bool:
    path = output_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        totals = summary["totals"]
    except (OSError, ValueError, KeyError) as error:
        _say(f"no readable summary at {path} ({error})")
        return False
    latency = totals.get("latency_ms") or {}
    _say(
        f"{totals['frames']} frames, {totals['hands']} hands ({totals['right_hands']} right, "
        f"{totals['left_hands']} left), {totals['frames_with_hands']} frames with hands"
        + (f"; latency p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms" if latency else "")
    )
    if summary.get("model"):
        _say(f"model: {summary['model']}; hand model: {summary['hand_model']}")
    return totals["frames"] > 0


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    output_dir = (args.out or default_output_dir()).absolute()
    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = child_environment(output_dir)
    _say(
        f"output folder {output_dir} (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}); "
        f"source {args.source!r} at {args.rate:g} Hz, {args.frames} frames"
    )
    children: list[Child] = []
    started = time.monotonic()
    try:
        for name, command in node_commands(args, output_dir).items():
            children.append(_start(name, command, env, logs, show_stdout=name == "recorder_node"))
        _say("started hands_node, recorder_node and camera_node; waiting for frames")
        recorder = next(c for c in children if c.name == "recorder_node")
        failed: Child | None = None
        while recorder.process.poll() is None:
            for child in children:
                code = child.process.poll()
                if child is recorder or code is None:
                    continue
                if child.name == "camera_node" and code == 0:
                    continue  # the source ended; the recorder stops after its idle timeout
                failed = child
                break
            if failed is not None:
                _report_failure(failed, f"exited with code {failed.process.returncode}")
                return 1
            if time.monotonic() - started > args.timeout:
                _say(f"timed out after {args.timeout:g} s (--timeout)")
                return 1
            time.sleep(_POLL_S)
        if recorder.process.returncode != 0:
            _report_failure(recorder, f"exited with code {recorder.process.returncode}")
            for child in children:
                if child is not recorder:
                    print(f"    ({child.name} log: {child.log_path})", flush=True)
            return 1
    except KeyboardInterrupt:
        _say("interrupted; stopping the nodes")
        stop(children)
        _print_summary(output_dir)
        _say(f"output: {output_dir}")
        return 130
    finally:
        stop(children)
    ok = _print_summary(output_dir)
    _say(f"output: {output_dir} (overlays/, summary.json, logs/)")
    return 0 if ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = parse_args(argv)
    # Terminated like interrupted: the nodes are stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
