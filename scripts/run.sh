#!/usr/bin/env bash
# Set up the project's virtual environment (.venv) and run one job in it.
#   scripts/run.sh demo [args]   the main job: the ROS demo loop on the embedded default model
#   scripts/run.sh test [args]   lint (ruff) and the whole test suite (pytest)
#   scripts/run.sh setup         only set up .venv
# .venv is reused when complete; the project itself is reinstalled when its sources changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="$venv/bin/python"

say() { printf '[smhr] %s\n' "$*" >&2; }

# Build and runtime requirements that pip would otherwise fetch into a throw-away build
# environment on every install; keeping them in .venv makes reinstalls take seconds.
build_requirements() {
  "$py" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(data["build-system"]["requires"]))
print("\n".join(data["project"]["dependencies"]))
print("\n".join(data["project"]["optional-dependencies"]["test"]))
PY
}

ensure_system() {
  local missing=()
  command -v python3.11 >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  [ -e "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)/Python.h" ] \
    || missing+=(python3-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing system packages: ${missing[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
      say "missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})"
      exit 1
    fi
  fi
}

source_hash() {
  (cd "$root" && cat pyproject.toml CMakeLists.txt package.xml \
    $(find msg launch config smhr_core smhr_ros training -type f ! -name '*.pyc' | sort) \
    | sha256sum | cut -d' ' -f1)
}

setup() {
  ensure_system
  local base=python3
  command -v python3.11 >/dev/null 2>&1 && base=python3.11
  if ! "$base" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    say "Python 3.11 is required (found $("$base" --version))"; exit 1
  fi
  local deps_stamp="$venv/.smhr-deps" project_stamp="$venv/.smhr-project"
  local want_deps
  want_deps="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$py" ] || [ "$(cat "$deps_stamp" 2>/dev/null)" != "$want_deps" ]; then
    say "creating .venv and installing pinned dependencies (first time: a few minutes)"
    rm -f "$deps_stamp" "$project_stamp"
    [ -x "$py" ] || "$base" -m venv "$venv"
    "$py" -m pip install -q --upgrade pip
    build_requirements > "$venv/.smhr-requirements.txt"
    "$py" -m pip install -q -r "$venv/.smhr-requirements.txt"
    echo "$want_deps" > "$deps_stamp"
  fi
  local want_project
  want_project="$(source_hash)"
  if [ "$(cat "$project_stamp" 2>/dev/null)" != "$want_project" ]; then
    say "building messages and installing smhr into .venv"
    (cd "$root" && "$py" -m pip install -q --no-deps --no-build-isolation --force-reinstall .)
    echo "$want_project" > "$project_stamp"
  fi
}

run_tests() {
  cd "$root"
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}"
  ROS_LOG_DIR="$(mktemp -d)"
  export ROS_LOG_DIR
  say "ruff"
  "$venv/bin/ruff" check .
  "$venv/bin/ruff" format --check .
  say "pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
  "$venv/bin/pytest" "$@"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  setup) setup ;;
  test) setup; run_tests "$@" ;;
  # PYTHONSAFEPATH: the checkout's smhr_ros (sources only) must not shadow the installed one,
  # which also holds the generated messages; the demo's child processes inherit it.
  demo) setup; PYTHONSAFEPATH=1 exec "$py" -m smhr_ros.demo "$@" ;;
  *) echo "usage: scripts/run.sh {demo|test|setup} [args]" >&2; exit 2 ;;
esac
