"""Peer comparison: MediaPipe Hands against the SMHR predictor on the same images in one run.

MediaPipe lives in its own venv (`bash benchmarks/setup_mediapipe.sh` makes
`.venv-mediapipe`); this script, run with the project's Python, starts
`benchmarks/mediapipe_worker.py` with that venv's Python and, image by image, asks the worker for
MediaPipe's hands and runs `smhr_core.predictor.Predictor` itself. The order of the two methods
alternates from image to image so that drifting machine load affects both alike.

Per method: hands found, time per image (median and p90 over every timed call; the image is
decoded beforehand, so the time covers colour conversion / letterboxing and inference), and,
where ground truth exists (a demo sequence folder with `labels.json`), recall, precision,
PCK@0.2, median 2D error and handedness accuracy against it.
Between the methods: hands are paired by the IoU of their keypoint boxes (Hungarian assignment,
pairs below --match-iou dropped); per pair, PCK@0.2 is the fraction of the 21 keypoints (both
use FreiHAND's order: wrist, thumb CMC/MCP/IP/tip, index MCP/PIP/DIP/tip, middle, ring, pinky)
closer than 0.2 x the larger side of MediaPipe's keypoint box; handedness agreement is the
fraction of pairs with the same side.

Handedness: both methods are compared on the side a hand shows in the image as given (for an
ordinary, non-mirrored camera image that is the anatomical side), which is what SMHR reports.
The legacy `mp.solutions.hands` API labels hands as if the image were mirrored (a selfie camera),
so its "Left" is a hand that looks right-handed in the image. --mp-handedness swap (default)
swaps its label; --mp-handedness flip mirrors each image before MediaPipe sees it and maps the
landmarks back (the fix MediaPipe's documentation recommends; its landmarks then come from the
mirrored image). The JSON keeps MediaPipe's own label as `mediapipe_label`.

Usage (from the repository root):
    bash benchmarks/setup_mediapipe.sh
    .venv/bin/python benchmarks/vs_mediapipe.py --random-weights resnet18 --out vs_mp.json
    .venv/bin/python benchmarks/vs_mediapipe.py --checkpoint model.pth photos/ --out vs_mp.json
    .venv/bin/python benchmarks/vs_mediapipe.py --precision bfloat16 --out vs_mp_bf16.json
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from smhr_core.__main__ import UsageError, build_predictor, collect_images, read_image
from smhr_core.config import BACKBONES, PRECISIONS, ConfigError
from smhr_core.decode_arguments import add_decode_arguments
from smhr_core.predictor import Predictor, PredictorError
from smhr_core.results import Handedness
from smhr_ros.demo_sequence import LABELS_FILE, DemoSequenceError, load_demo_sequence

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "mediapipe_worker.py"
DEFAULT_MEDIAPIPE_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"
DEFAULT_INPUTS = (ROOT / "tests" / "data" / "handSrc.jpg", ROOT / "smhr_ros" / "data" / "demo")
PCK_FRACTION = 0.2
METHODS = ("mediapipe", "smhr")
NAMES = {"mediapipe": "MediaPipe Hands", "smhr": "SMHR"}
MP_HANDEDNESS = {
    "swap": "MediaPipe's label swapped (its legacy API assumes mirrored images)",
    "flip": "images mirrored before MediaPipe, landmarks mapped back, label as given",
}
_MEDIAPIPE_LABELS = {"Left": Handedness.LEFT, "Right": Handedness.RIGHT}


class BenchmarkError(RuntimeError):
    """The benchmark cannot run; the message says why in one line."""


@dataclass(frozen=True, eq=False)
class Hand2D:
    """One hand's 2D keypoints and side, from a method or from ground truth."""

    keypoints_px: np.ndarray
    """(21, 2) float64 (u, v) pixels, FreiHAND order."""
    handedness: Handedness
    """The side the hand shows in the image as given (anatomical for a non-mirrored image)."""
    score: float | None = None
    """SMHR: heatmap peak score; MediaPipe: score of its handedness label; truth: None."""
    label: str | None = None
    """MediaPipe's own handedness label; None for the others."""

    def box_px(self) -> np.ndarray:
        """(u_min, v_min, u_max, v_max) of the keypoints, pixels."""
        return np.concatenate([self.keypoints_px.min(axis=0), self.keypoints_px.max(axis=0)])

    def box_side_px(self) -> float:
        """Larger side of the keypoint box, pixels (at least 1)."""
        box = self.box_px()
        return max(1.0, float(max(box[2] - box[0], box[3] - box[1])))

    def to_json(self) -> dict:
        data: dict = {"handedness": self.handedness.name.lower()}
        if self.score is not None:
            data["score"] = round(self.score, 6)
        if self.label is not None:
            data["mediapipe_label"] = self.label
        data["keypoints_px"] = self.keypoints_px.round(3).tolist()
        data["box_px"] = self.box_px().round(3).tolist()
        return data


@dataclass(frozen=True, eq=False)
class ImageItem:
    """One benchmark image, the input it came from, and its ground truth if any."""

    path: Path
    group: str
    truth: tuple[Hand2D, ...] | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        help="image files, folders of images, or demo sequence folders (with labels.json: "
        "ground truth is used); default: tests/data/handSrc.jpg and smhr_ros/data/demo",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--checkpoint", type=Path, help="SMHR checkpoint (default: the embedded default)"
    )
    model.add_argument(
        "--random-weights",
        choices=BACKBONES,
        help="an untrained, seeded SMHR network with this backbone (timing only)",
    )
    parser.add_argument("--hand-model", type=Path, help="MANO folder (default: open hand model)")
    parser.add_argument("--resolution", type=int, help="SMHR input size, pixels")
    parser.add_argument("--max-hands", type=int, default=4, help="hands per image, both methods")
    parser.add_argument("--device", default="cpu", help="torch device for SMHR")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="SMHR network precision (auto: float16 on CUDA, else float32; bfloat16 on CPUs "
        "with AMX or AVX512-BF16)",
    )
    add_decode_arguments(parser)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--mediapipe-python",
        type=Path,
        default=DEFAULT_MEDIAPIPE_PYTHON,
        help="Python of the venv with MediaPipe (default: .venv-mediapipe/bin/python)",
    )
    parser.add_argument(
        "--mp-detection-confidence", type=float, default=0.5, help="MediaPipe palm threshold"
    )
    parser.add_argument(
        "--mp-model-complexity", type=int, choices=(0, 1), default=1, help="MediaPipe landmarks"
    )
    parser.add_argument(
        "--mp-handedness",
        choices=MP_HANDEDNESS,
        default="swap",
        help="undo MediaPipe's mirrored-image labels: swap them, or flip the images (see above)",
    )
    parser.add_argument("--match-iou", type=float, default=0.1, help="min keypoint-box IoU")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per method first")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per image and method")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    # Read by smhr_core.__main__.build_predictor.
    parser.set_defaults(no_vertices=False)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1, --warmup >= 0")
    if not 0.0 <= args.match_iou <= 1.0:
        parser.error("--match-iou must be within [0, 1]")
    return args


def collect_items(inputs: list[Path]) -> list[ImageItem]:
    """The images of every input, in order; a folder with labels.json is a demo sequence."""
    items: list[ImageItem] = []
    for item in inputs:
        group = item.name
        if item.is_dir() and (item / LABELS_FILE).is_file():
            try:
                sequence = load_demo_sequence(item)
            except DemoSequenceError as error:
                raise BenchmarkError(str(error)) from None
            for frame in sequence.frames:
                truth = tuple(Hand2D(h.keypoints_px, h.handedness) for h in frame.hands)
                items.append(ImageItem(frame.path.resolve(), group, truth))
        else:
            try:
                paths = collect_images([item])
            except UsageError as error:
                raise BenchmarkError(str(error)) from None
            items += [ImageItem(path.resolve(), group, None) for path in paths]
    return items


def default_inputs() -> list[Path]:
    """The bundled photo, and the demo sequence when this checkout has it."""
    photo, demo = DEFAULT_INPUTS
    return [photo] + ([demo] if (demo / LABELS_FILE).is_file() else [])


def child_environment() -> dict[str, str]:
    """This environment without the ROS wheels' bootstrap marker and library path.

    The ROS wheels' bootstrapper re-executes this venv's Python with LD_LIBRARY_PATH extended by
    directories inside this venv; another venv's Python must not inherit them (nor PYTHONPATH).
    """
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    prefix = os.path.realpath(sys.prefix)
    kept = [
        part
        for part in env.pop("LD_LIBRARY_PATH", "").split(os.pathsep)
        if part
        and not os.path.realpath(part).startswith(prefix + os.sep)
        and os.path.realpath(part) != prefix
    ]
    if kept:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(kept)
    env.setdefault("GLOG_minloglevel", "2")  # MediaPipe's native INFO/WARNING lines
    return env


class MediaPipeWorker:
    """`mediapipe_worker.py` running in the MediaPipe venv, one JSON line per request."""

    def __init__(self, python: Path, args: argparse.Namespace) -> None:
        if not python.is_file():
            raise BenchmarkError(
                f"MediaPipe Python {python} does not exist: create it with "
                "`bash benchmarks/setup_mediapipe.sh` or pass --mediapipe-python"
            )
        # Lives as long as the worker; close() closes it.
        self._log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        command = [
            str(python),
            str(WORKER),
            f"--max-hands={args.max_hands}",
            f"--min-detection-confidence={args.mp_detection_confidence}",
            f"--model-complexity={args.mp_model_complexity}",
        ]
        if args.mp_handedness == "flip":
            command.append("--flip")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
            env=child_environment(),
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            self._log.seek(0)
            tail = " | ".join(self._log.read().strip().splitlines()[-5:])
            raise BenchmarkError(f"MediaPipe worker exited with status {code}: {tail}")
        return json.loads(line)

    def process(self, path: Path) -> dict:
        """MediaPipe's answer for one image file (see mediapipe_worker.py)."""
        self._process.stdin.write(json.dumps({"path": str(path)}) + "\n")
        self._process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise BenchmarkError(f"MediaPipe worker: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()

    def __enter__(self) -> MediaPipeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mediapipe_hands(answer: dict, handedness: str) -> list[Hand2D]:
    """MediaPipe's hands with the side they show in the image (see --mp-handedness)."""
    hands = []
    for hand in answer["hands"]:
        side = _MEDIAPIPE_LABELS[hand["label"]]
        # With "flip" the worker's image was mirrored, so its label already is the shown side.
        if handedness == "swap":
            side = Handedness.RIGHT if side == Handedness.LEFT else Handedness.LEFT
        hands.append(
            Hand2D(
                np.asarray(hand["keypoints_px"], dtype=np.float64),
                side,
                float(hand["label_score"]),
                hand["label"],
            )
        )
    return hands


def smhr_hands(predictor: Predictor, image: np.ndarray) -> tuple[list[Hand2D], float]:
    """SMHR's hands in one BGR image and the time the predictor took, seconds."""
    start = time.perf_counter()
    (result,) = predictor.predict([image], "bgr")
    elapsed = time.perf_counter() - start
    hands = [
        Hand2D(h.keypoints_px.astype(np.float64), h.handedness, float(h.score))
        for h in result.hands
    ]
    return hands, elapsed


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (u_min, v_min, u_max, v_max) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_by_box_iou(
    first: list[Hand2D], second: list[Hand2D], min_iou: float
) -> list[tuple[int, int]]:
    """One-to-one pairs (index in first, index in second) maximising total keypoint-box IoU."""
    if not first or not second:
        return []
    iou = np.array([[box_iou(a.box_px(), b.box_px()) for b in second] for a in first])
    rows, cols = linear_sum_assignment(-iou)
    return [
        (int(r), int(c))
        for r, c in zip(rows, cols, strict=True)
        if iou[r, c] > 0 and iou[r, c] >= min_iou
    ]


def relative_errors(hand: Hand2D, reference: Hand2D) -> np.ndarray:
    """(21,) keypoint distances divided by the larger side of the reference's keypoint box."""
    distances = np.linalg.norm(hand.keypoints_px - reference.keypoints_px, axis=1)
    return distances / reference.box_side_px()


def quantiles_ms(times_s: list[float]) -> dict[str, float | None]:
    if not times_s:
        return {"median_ms": None, "p90_ms": None}
    ordered = sorted(times_s)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": 1e3 * statistics.median(ordered), "p90_ms": 1e3 * p90}


def run_images(
    items: list[ImageItem],
    worker: MediaPipeWorker,
    predictor: Predictor,
    args: argparse.Namespace,
) -> list[dict]:
    """Both methods on every image, interleaved; hands and times per image and method."""
    first = read_image(items[0].path)
    for _ in range(args.warmup):
        worker.process(items[0].path)
        smhr_hands(predictor, first)
    records = []
    for index, item in enumerate(items):
        image = read_image(item.path)
        size = [int(image.shape[1]), int(image.shape[0])]
        hands: dict[str, list[Hand2D]] = {}
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for repeat in range(args.repeats):
            order = METHODS if (index + repeat) % 2 == 0 else METHODS[::-1]
            for method in order:
                if method == "mediapipe":
                    answer = worker.process(item.path)
                    if answer["image_size"] != size:
                        raise BenchmarkError(
                            f"{item.path}: MediaPipe decoded {answer['image_size']} pixels, "
                            f"SMHR {size}"
                        )
                    found, elapsed = (
                        mediapipe_hands(answer, args.mp_handedness),
                        answer["time_ms"] / 1e3,
                    )
                else:
                    found, elapsed = smhr_hands(predictor, image)
                hands.setdefault(method, found)
                times[method].append(elapsed)
        records.append({"item": item, "image_size": size, "hands": hands, "times_s": times})
    return records


def method_summary(records: list[dict], method: str, min_iou: float) -> dict:
    """Hands found, timing and (on labelled images) accuracy against the ground truth."""
    found = [len(r["hands"][method]) for r in records]
    summary: dict = {
        "images": len(records),
        "hands": sum(found),
        "images_with_hands": sum(1 for n in found if n),
        **quantiles_ms([t for r in records for t in r["times_s"][method]]),
    }
    labelled = [r for r in records if r["item"].truth is not None]
    if not labelled:
        summary["vs_truth"] = None
        return summary
    true_hands = predicted = matched = same_side = 0
    errors: list[np.ndarray] = []
    for record in labelled:
        hands, truth = record["hands"][method], list(record["item"].truth)
        pairs = match_by_box_iou(hands, truth, min_iou)
        true_hands += len(truth)
        predicted += len(hands)
        matched += len(pairs)
        for i, j in pairs:
            errors.append(relative_errors(hands[i], truth[j]))
            same_side += hands[i].handedness == truth[j].handedness
    all_errors = np.concatenate(errors) if errors else np.zeros(0)
    summary["vs_truth"] = {
        "images": len(labelled),
        "true_hands": true_hands,
        "matched": matched,
        "recall": matched / true_hands if true_hands else None,
        "precision": matched / predicted if predicted else None,
        "pck": float((all_errors < PCK_FRACTION).mean()) if errors else None,
        "median_error_of_box": float(np.median(all_errors)) if errors else None,
        "handedness_accuracy": same_side / matched if matched else None,
    }
    return summary


def agreement_summary(records: list[dict], min_iou: float) -> dict:
    """SMHR against MediaPipe on pairs of hands matched by keypoint-box IoU."""
    pairs_total = same_side = 0
    errors: list[np.ndarray] = []
    pixel_errors: list[np.ndarray] = []
    for record in records:
        reference, hands = record["hands"]["mediapipe"], record["hands"]["smhr"]
        pairs = match_by_box_iou(reference, hands, min_iou)
        record["pairs"] = pairs
        pairs_total += len(pairs)
        for i, j in pairs:
            errors.append(relative_errors(hands[j], reference[i]))
            pixel_errors.append(
                np.linalg.norm(hands[j].keypoints_px - reference[i].keypoints_px, axis=1)
            )
            same_side += hands[j].handedness == reference[i].handedness
    all_errors = np.concatenate(errors) if errors else np.zeros(0)
    mp_hands = sum(len(r["hands"]["mediapipe"]) for r in records)
    smhr_total = sum(len(r["hands"]["smhr"]) for r in records)
    return {
        "pairs": pairs_total,
        "mediapipe_only": mp_hands - pairs_total,
        "smhr_only": smhr_total - pairs_total,
        "pck": float((all_errors < PCK_FRACTION).mean()) if errors else None,
        "median_error_of_box": float(np.median(all_errors)) if errors else None,
        "median_error_px": float(np.median(np.concatenate(pixel_errors))) if errors else None,
        "handedness_agreement": same_side / pairs_total if pairs_total else None,
    }


def summarise(records: list[dict], min_iou: float) -> dict:
    """Per input group and over all images."""
    per_group: dict[str, list[dict]] = {}
    for record in records:
        per_group.setdefault(record["item"].group, []).append(record)
    groups = {**per_group, "(all)": records} if len(per_group) > 1 else per_group
    return {
        name: {
            **{m: method_summary(rs, m, min_iou) for m in METHODS},
            "agreement": agreement_summary(rs, min_iou),
        }
        for name, rs in groups.items()
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_tables(summary: dict, labels: dict[str, str], min_iou: float) -> None:
    print()
    print(
        "| images | method | hands found (images with hands) | time median / p90 ms "
        "| GT recall | GT precision | PCK@0.2 vs GT | median 2D error (of GT box) "
        "| handedness vs GT |"
    )
    print("|---" * 9 + "|")
    for group, parts in summary.items():
        for method in METHODS:
            s = parts[method]
            t = s["vs_truth"] or {}
            print(
                f"| {group} ({s['images']}) | {labels[method]} "
                f"| {s['hands']} ({s['images_with_hands']}) "
                f"| {_ms(s['median_ms'])} / {_ms(s['p90_ms'])} "
                f"| {_pct(t.get('recall'))} | {_pct(t.get('precision'))} | {_pct(t.get('pck'))} "
                f"| {_pct(t.get('median_error_of_box'))} | {_pct(t.get('handedness_accuracy'))} |"
            )
    print()
    print(f"SMHR against MediaPipe (hands paired by keypoint-box IoU >= {min_iou}):")
    print()
    print(
        "| images | pairs | MediaPipe only | SMHR only | PCK@0.2 of MediaPipe box "
        "| median error (of box / px) | handedness agreement |"
    )
    print("|---" * 7 + "|")
    for group, parts in summary.items():
        a = parts["agreement"]
        px = "-" if a["median_error_px"] is None else f"{a['median_error_px']:.1f} px"
        print(
            f"| {group} | {a['pairs']} | {a['mediapipe_only']} | {a['smhr_only']} "
            f"| {_pct(a['pck'])} | {_pct(a['median_error_of_box'])} / {px} "
            f"| {_pct(a['handedness_agreement'])} |"
        )


def records_to_json(records: list[dict]) -> list[dict]:
    out = []
    for record in records:
        item = record["item"]
        out.append(
            {
                "path": str(item.path),
                "group": item.group,
                "image_size": record["image_size"],
                "truth": None if item.truth is None else [h.to_json() for h in item.truth],
                **{
                    method: {
                        "hands": [h.to_json() for h in record["hands"][method]],
                        "times_ms": [round(1e3 * t, 3) for t in record["times_s"][method]],
                    }
                    for method in METHODS
                },
                "pairs_mediapipe_smhr": record.get("pairs", []),
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    items = collect_items(args.inputs or default_inputs())
    try:
        predictor, note = build_predictor(args)
    except PredictorError as error:
        raise BenchmarkError(f"{error} (pass --checkpoint or --random-weights)") from None
    with MediaPipeWorker(args.mediapipe_python, args) as worker:
        mp_info = worker.hello
        labels = {
            "mediapipe": f"{NAMES['mediapipe']} {mp_info['mediapipe']}",
            "smhr": f"{NAMES['smhr']} {predictor.model_description}",
        }
        print(f"{labels['mediapipe']} (model complexity {args.mp_model_complexity})")
        print(f"{labels['smhr']} on {predictor.device}, {args.threads} thread(s); {note}")
        print(f"{len(items)} image(s); warm-up {args.warmup}, {args.repeats} timed call(s) each")
        records = run_images(items, worker, predictor, args)
    summary = summarise(records, args.match_iou)
    print_tables(summary, labels, args.match_iou)
    if args.out is not None:
        report = {
            "settings": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "inputs": [str(p) for p in (args.inputs or default_inputs())],
                "smhr_weights": note,
                "smhr_model": predictor.model_description,
                "hand_model": predictor.hand_model_id,
                "torch": torch.__version__,
                "mediapipe_worker": mp_info,
                "mediapipe_handedness": MP_HANDEDNESS[args.mp_handedness],
                "pck_fraction": PCK_FRACTION,
                "machine": platform.machine(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
            },
            "summary": summary,
            "images": records_to_json(records),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (BenchmarkError, UsageError, PredictorError, ConfigError) as error:
        print(f"vs_mediapipe: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
