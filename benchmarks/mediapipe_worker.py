"""MediaPipe Hands worker for `vs_mediapipe.py`; runs in its own venv (see setup_mediapipe.sh).

MediaPipe cannot share the project's venv (its wheels bring opencv-contrib-python, which clashes
with the project's opencv-python, and jax/protobuf pins), so the benchmark starts this script with
the MediaPipe venv's Python. It imports only mediapipe, OpenCV and numpy.

Protocol, one JSON object per line: the worker first writes a hello line with its versions, then
answers each request line `{"path": "<image file>"}` on stdin with
`{"path", "image_size": [w, h], "time_ms", "hands": [{"label", "label_score",
"keypoints_px"}]}` (or `{"path", "error"}`) on stdout, until stdin closes. `keypoints_px` are the
21 landmarks in pixels (u, v) of the image, in MediaPipe's order, which is FreiHAND's. `label`
is MediaPipe's handedness label ("Left"/"Right"), which the legacy API gives as if the image were
mirrored (selfie); with --flip the worker mirrors each image before MediaPipe sees it (the fix
MediaPipe's documentation recommends for ordinary camera images) and maps the landmarks back, so
the label is the anatomical side. `time_ms` covers the colour conversion, the flip and
`Hands.process` on the decoded image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import mediapipe as mp
import numpy as np


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-hands", type=int, default=4, help="max_num_hands")
    parser.add_argument(
        "--min-detection-confidence", type=float, default=0.5, help="palm detector threshold"
    )
    parser.add_argument(
        "--model-complexity", type=int, choices=(0, 1), default=1, help="landmark model: 0 lite"
    )
    parser.add_argument(
        "--flip", action="store_true", help="mirror each image first (anatomical labels)"
    )
    return parser.parse_args()


def protocol_stream():
    """A text stream on the original stdout; fd 1 then goes to stderr so native logs stay out."""
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream


def process(hands, path: str, flip: bool) -> dict:
    """Landmarks and handedness of every hand MediaPipe finds in one image file."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return {"path": path, "error": f"{path} is not a readable image"}
    height, width = image.shape[:2]
    start = time.perf_counter()
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    result = hands.process(cv2.flip(rgb, 1) if flip else rgb)
    elapsed = time.perf_counter() - start
    found = []
    for landmarks, handedness in zip(
        result.multi_hand_landmarks or [], result.multi_handedness or [], strict=True
    ):
        normalised = np.array([(p.x, p.y) for p in landmarks.landmark], dtype=np.float64)
        if flip:
            normalised[:, 0] = 1.0 - normalised[:, 0]
        pixels = normalised * np.array([width, height], dtype=np.float64)
        best = handedness.classification[0]
        found.append(
            {
                "label": best.label,
                "label_score": round(float(best.score), 6),
                "keypoints_px": pixels.round(3).tolist(),
            }
        )
    return {
        "path": path,
        "image_size": [width, height],
        "time_ms": 1e3 * elapsed,
        "hands": found,
    }


def main() -> None:
    args = parse_args()
    out = protocol_stream()
    # Every image is independent (no tracking between them), as for the SMHR predictor.
    with mp.solutions.hands.Hands(
        static_image_mode=True,
        max_num_hands=args.max_hands,
        model_complexity=args.model_complexity,
        min_detection_confidence=args.min_detection_confidence,
    ) as hands:
        hello = {
            "mediapipe": mp.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "python": sys.version.split()[0],
            "settings": vars(args),
        }
        out.write(json.dumps(hello) + "\n")
        for line in sys.stdin:
            if not line.strip():
                continue
            path = json.loads(line)["path"]
            out.write(json.dumps(process(hands, path, args.flip)) + "\n")


if __name__ == "__main__":
    main()
