#!/usr/bin/env bash
# Set up cgrs_ros in ./.venv: pinned dependencies (torch, open_clip, transformers, ROS 2 Kilted
# wheels, ...), the ROS interfaces built from msg/ and action/, and the package itself (editable).
# Idempotent: a second run only checks what is already there (~15 s).
#
#   bash scripts/setup.sh            # PYTHON=python3.11 bash scripts/setup.sh to pick the interpreter
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="$PWD/.venv"
python="${PYTHON:-python3}"

quiet_pip() {  # pip's local find-links warnings on these machines are noise; real errors still fail
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
# On the profile's own target (x86_64, Python 3.11) every transitive version comes from its lock
# too (requirements/locks/x86_64-py311.txt, made from requirements.txt by scripts/lock_profiles.sh);
# elsewhere requirements.txt's own pins and ranges decide.
lock=requirements/locks/x86_64-py311.txt
constraints=()
[[ "$("$venv/bin/python" -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())')" == "3.11 x86_64" ]] \
  && constraints=(-c "$lock")
echo "setup: installing pinned dependencies into $venv${constraints[*]:+ (locked: $lock)} (first time: a few minutes)"
quiet_pip install -q -r requirements.txt "${constraints[@]}"
# The package first: reinstalling it makes pip remove site-packages/cgrs_ros, where the
# interfaces go next.  compat mode puts the source tree on sys.path, so the source package and
# the generated cgrs_ros.msg/.action join through pkgutil.extend_path (see cgrs_ros/__init__.py).
echo "setup: installing cgrs_ros (editable)"
quiet_pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
echo "setup: building the ROS 2 interfaces (msg/, action/)"
bash scripts/build_interfaces.sh "$venv" > "$venv/build_interfaces.log" 2>&1 || {
  tail -n 40 "$venv/build_interfaces.log" >&2; exit 1; }
# Checked from outside the repo: from its root, the source tree on sys.path would hide a broken install.
(cd / && "$venv/bin/python" -c "import cgrs_ros, cgrs_ros.engine, cgrs_ros.msg, cgrs_ros.action, rclpy") \
  || { echo "setup: the installed package does not import" >&2; exit 1; }
echo "setup: done ($venv)"
