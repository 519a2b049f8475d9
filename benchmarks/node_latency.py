"""End-to-end latency and throughput of hands_node against the bare Predictor, on the CPU.

Measurements:
1. closed loop, interleaved frame by frame so both see the same machine load: the bare Predictor
   in this process (`predict([image])`), then hands_node in a child process (this process
   publishes the same image as sensor_msgs/Image + CameraInfo and waits for its HandArray;
   latency = reception time - image stamp, the stamp being the publication time). Throughput
   in closed loop is 1 / mean latency;
2. open loop: images published at `--rate` Hz for `--seconds` -> HandArray messages received per
   second, latency under load and dropped frames (the node keeps only the newest frame).
ROS overhead = node closed-loop latency / Predictor latency (medians); throughput ratio = bare
Predictor closed-loop throughput / node open-loop throughput. On a busy machine these ratios
carry the load's noise; the node's time outside `predict()` (per frame: end-to-end latency minus
the inference time the node reports in HandArray.inference_time) does not.

Without `--checkpoint`, a seeded random network of `--backbone` at `--resolution` is saved to a
temporary directory; the node then runs with score threshold 0 so every image has `--hands`
hands (a fixed workload). The node publishes `hands` and, with `--markers`, `markers`.

Usage:
    python benchmarks/node_latency.py --backbone resnet18 --resolution 224 --out latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from smhr_ros.msg import HandArray

from smhr_core.checkpoint import save_checkpoint
from smhr_core.config import BACKBONES, DecodeConfig, ModelConfig
from smhr_core.network import SMHRNet
from smhr_core.predictor import Predictor
from smhr_ros.image_conversion import bgr_to_image

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: random network")
    parser.add_argument("--backbone", default="resnet18", choices=BACKBONES)
    parser.add_argument("--resolution", type=int, default=224, help="network input, pixels")
    parser.add_argument("--hands", type=int, default=2, help="hands per image (random network)")
    parser.add_argument("--width", type=int, default=640, help="image width, pixels")
    parser.add_argument("--height", type=int, default=480, help="image height, pixels")
    parser.add_argument("--frames", type=int, default=30, help="timed frames per closed loop")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    parser.add_argument("--rate", type=float, default=60.0, help="open-loop publish rate, Hz")
    parser.add_argument("--seconds", type=float, default=5.0, help="open-loop duration, s")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both sides)")
    parser.add_argument("--markers", action="store_true", help="node also publishes markers")
    parser.add_argument("--domain", type=int, default=77, help="ROS domain id for the run")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    return parser.parse_args()


def summary(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000.0
    return {
        "n": len(ms),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
    }


def make_images(count: int, width: int, height: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def camera_matrix(width: int, height: int) -> np.ndarray:
    f = float(width)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


class NodeClient:
    """Publishes images to hands_node and records the HandArray replies."""

    def __init__(self, domain: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("node_latency_benchmark", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.images = self.node.create_publisher(Image, "/bench/image_raw", RELIABLE)
        self.info = self.node.create_publisher(CameraInfo, "/bench/camera_info", RELIABLE)
        self.replies: dict[tuple[int, int], tuple[float, HandArray]] = {}
        self.node.create_subscription(HandArray, "/hands", self._on_hands, RELIABLE)

    def _on_hands(self, msg: HandArray) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.replies[stamp] = (self.now_s(), msg)

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not predicate():
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def publish(self, image_msg: Image, info: CameraInfo) -> tuple[tuple[int, int], float]:
        stamp = self.node.get_clock().now()
        image_msg.header.stamp = stamp.to_msg()
        info.header = image_msg.header
        self.info.publish(info)
        self.images.publish(image_msg)
        return (
            image_msg.header.stamp.sec,
            image_msg.header.stamp.nanosec,
        ), stamp.nanoseconds * 1e-9

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def start_node(args: argparse.Namespace, checkpoint: Path, workdir: Path) -> subprocess.Popen:
    parameters = {
        "image_topics": ["/bench/image_raw"],
        "checkpoint": str(checkpoint),
        "device": "cpu",
        "torch_threads": args.threads,
        "decode_mode": "robot",
        "score_threshold": 0.0 if args.checkpoint is None else 0.3,
        "max_hands": args.hands,
        "max_rate_hz": 0.0,
        "publish_markers": bool(args.markers),
        "image_qos": "reliable",
    }
    params = workdir / "node_latency.yaml"
    params.write_text(yaml.safe_dump({"hands_node": {"ros__parameters": parameters}}))
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain), ROS_LOG_DIR=str(workdir))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    code = "import sys; from smhr_ros.hands_node import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--ros-args", "--params-file", str(params)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def bench(args: argparse.Namespace, checkpoint: Path, decode: DecodeConfig, workdir: Path) -> dict:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["ROS_LOG_DIR"] = str(workdir)
    predictor = Predictor(checkpoint, device="cpu", decode=decode, with_vertices=True)
    process = start_node(args, checkpoint, workdir)
    client = NodeClient(args.domain)
    try:
        if not client.spin_until(lambda: client.images.get_subscription_count() > 0, 300.0):
            raise RuntimeError(f"hands_node did not start: {process.stderr.read()}")
        client.spin_until(lambda: client.node.count_publishers("/hands") > 0, 60.0)
        k = camera_matrix(args.width, args.height)
        info = CameraInfo(width=args.width, height=args.height)
        info.k = k.reshape(9).tolist()
        images = make_images(args.frames + args.warmup, args.width, args.height)
        messages = [bgr_to_image(image, Image().header) for image in images]
        bare, hands = [], []
        latencies, inference, node_latency = [], [], []
        for index, (image, msg) in enumerate(zip(images, messages, strict=True)):
            started = time.perf_counter()
            result = predictor.predict([image], "bgr", [k])[0]
            bare_s = time.perf_counter() - started
            stamp, sent_s = client.publish(msg, info)
            if not client.spin_until(lambda s=stamp: s in client.replies, 60.0):
                raise RuntimeError(f"no HandArray for frame {index} within 60 s")
            received_s, reply = client.replies[stamp]
            if index >= args.warmup:
                bare.append(bare_s)
                hands.append(len(result.hands))
                latencies.append(received_s - sent_s)
                inference.append(reply.inference_time)
                node_latency.append(reply.latency)
        predictor_results = {
            "model": predictor.model_description,
            "latency": summary(bare),
            "throughput_hz": len(bare) / sum(bare),
            "hands_per_image": statistics.mean(hands),
        }
        del predictor
        closed = {
            "latency": summary(latencies),
            "outside_inference": summary(
                [t - i for t, i in zip(latencies, inference, strict=True)]
            ),
            "node_reported_latency": summary(node_latency),
            "inference": summary(inference),
            "throughput_hz": len(latencies) / sum(latencies),
        }
        client.replies.clear()
        period = 1.0 / args.rate
        sent = 0
        started = time.monotonic()
        next_time = started
        while time.monotonic() - started < args.seconds:
            client.publish(messages[sent % len(messages)], info)
            sent += 1
            next_time += period
            client.spin_until(lambda t=next_time: time.monotonic() >= t, period + 1.0)
        duration = time.monotonic() - started
        client.spin_until(lambda: False, 2.0)  # replies still in flight
        received = [(t, m) for t, m in client.replies.values()]
        open_latencies = [
            t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9) for t, m in received
        ]
        opened = {
            "published": sent,
            "published_hz": sent / duration,
            "received": len(received),
            "throughput_hz": len(received) / duration,
            "dropped": sent - len(received),
            "latency": summary(open_latencies) if open_latencies else None,
        }
        return {
            "predictor": predictor_results,
            "node": {"closed_loop": closed, "open_loop": opened},
        }
    finally:
        client.close()
        process.terminate()
        process.communicate(timeout=30)


def print_table(results: dict) -> None:
    bare, node = results["predictor"], results["node"]
    closed, opened = node["closed_loop"], node["open_loop"]
    rows = [
        ("bare Predictor", bare["latency"], bare["throughput_hz"]),
        ("hands_node, closed loop", closed["latency"], closed["throughput_hz"]),
        ("hands_node, open loop", opened["latency"], opened["throughput_hz"]),
    ]
    print(
        f"\n{results['model']}, {results['image']}, {results['hands_per_image']} hands/image, "
        f"{results['threads']} threads, markers {'on' if results['markers'] else 'off'}"
    )
    print(f"{'':26} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'images/s':>9}")
    for name, latency, rate in rows:
        print(
            f"{name:26} {latency['p50_ms']:8.1f} {latency['p95_ms']:8.1f} "
            f"{latency['max_ms']:8.1f} {rate:9.2f}"
        )
    print(
        f"node inference (reported) p50 {closed['inference']['p50_ms']:.1f} ms; open loop: "
        f"{opened['published']} published at {opened['published_hz']:.1f} Hz, "
        f"{opened['received']} processed, {opened['dropped']} dropped"
    )
    outside = closed["outside_inference"]
    print(
        f"node time outside predict() (conversion, messages, DDS): p50 {outside['p50_ms']:.1f} ms, "
        f"p95 {outside['p95_ms']:.1f} ms"
    )
    ratios = results["ros_overhead"]
    print(
        f"ROS overhead: latency x{ratios['latency_ratio']:.2f} "
        f"(+{ratios['latency_added_ms']:.1f} ms), throughput x{ratios['throughput_ratio']:.2f}"
    )


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="smhr_node_latency_") as tmp:
        workdir = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            config = ModelConfig(args.backbone, args.resolution, ("hm", "params", "handmap"))
            checkpoint = save_checkpoint(workdir / "random.pth", SMHRNet(config), config, 0)
        decode = DecodeConfig(
            mode="robot",
            score_threshold=0.0 if args.checkpoint is None else 0.3,
            max_hands=args.hands,
        )
        measured = bench(args, checkpoint, decode, workdir)
    bare, node = measured["predictor"], measured["node"]
    closed = node["closed_loop"]
    results = {
        "model": bare["model"],
        "image": f"{args.width}x{args.height}",
        "hands_per_image": bare["hands_per_image"],
        "threads": args.threads,
        "markers": bool(args.markers),
        "predictor": bare,
        "node": node,
        "ros_overhead": {
            "latency_ratio": closed["latency"]["p50_ms"] / bare["latency"]["p50_ms"],
            "latency_added_ms": closed["latency"]["p50_ms"] - bare["latency"]["p50_ms"],
            "throughput_ratio": bare["throughput_hz"] / node["open_loop"]["throughput_hz"],
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "torch": torch.__version__,
        },
    }
    print_table(results)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
