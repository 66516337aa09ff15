#!/usr/bin/env bash
# Install cgrs_ros into a colcon workspace over an existing ROS 2 (Humble, Jazzy, Kilted; from apt,
# a ROS container or a jetson-containers image): the ROS way, for a drone's companion computer.
#
#   scripts/install_workspace.sh [options] [-- colcon build arguments]
#
#   --workspace DIR     colcon workspace (build/, install/, log/); default: the folder above src/
#                       when this repository is <ws>/src/<name>, else required
#   --underlay FILE     ROS 2 setup.bash to build against (default /opt/ros/$ROS_DISTRO/setup.bash)
#   --skip-rosdep       do not run rosdep (its keys are in package.xml)
#   --skip-pip          do not install the Python libraries
#   --profile NAME      the lock of requirements/locks/NAME.txt (see docs/install.md); default
#                       "auto": the workspace profile made for this python3 and machine
#                       (jetpack6-py310-aarch64 on a JetPack 6 Jetson, jazzy-py312-aarch64 on an
#                       aarch64 Ubuntu 24.04), else requirements-ml.txt (today's pins)
#   --pip-dry-run       only show what pip would install (pip install --dry-run)
#   --pip-args "ARGS"   extra pip arguments, e.g. "--user" or "--break-system-packages"
#                       (PIP_* environment variables work too: PIP_BREAK_SYSTEM_PACKAGES=1)
#
# Steps: source the underlay; rosdep installs the system and ROS packages package.xml names
# (numpy, OpenCV, cv_bridge, ...); pip installs the profile's lock or requirements-ml.txt
# (open_clip, transformers, sentence-transformers, ...) with a constraints file pinning the
# installed torch, torchvision and numpy, so pip can never replace the platform's torch
# (JetPack's CUDA build on a Jetson) with a generic wheel; colcon builds the package.  torch and
# torchvision must be installed first: this script never chooses a torch for you.  Then:
#   source <ws>/install/setup.bash && ros2 launch cgrs_ros cgrs.launch.py
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "install_workspace.sh: $*" >&2; exit 2; }

workspace=""
underlay=""
run_rosdep=1
pip_mode=install
pip_args=()
profile=auto
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workspace) [[ $# -ge 2 ]] || die "--workspace needs a folder"; workspace="$2"; shift 2 ;;
    --underlay) [[ $# -ge 2 ]] || die "--underlay needs a setup.bash"; underlay="$2"; shift 2 ;;
    --skip-rosdep) run_rosdep=0; shift ;;
    --skip-pip) pip_mode=skip; shift ;;
    --pip-dry-run) pip_mode="dry-run"; shift ;;
    --profile) [[ $# -ge 2 ]] || die "--profile needs a name (requirements/locks/NAME.txt) or auto"; profile="$2"; shift 2 ;;
    --pip-args) [[ $# -ge 2 ]] || die "--pip-args needs a value"; read -r -a pip_args <<< "$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

if [[ -z "$workspace" ]]; then
  [[ "$(basename "$(dirname "$here")")" == src ]] || \
    die "$here is not in a workspace's src/ folder: pass --workspace DIR"
  workspace="$(dirname "$(dirname "$here")")"
fi
mkdir -p "$workspace" || die "cannot create the workspace folder $workspace"
workspace="$(cd "$workspace" && pwd)"

if [[ -z "$underlay" ]]; then
  [[ -n "${ROS_DISTRO:-}" ]] || die "ROS_DISTRO is not set: pass --underlay /opt/ros/<distro>/setup.bash"
  underlay="/opt/ros/$ROS_DISTRO/setup.bash"
fi
[[ -f "$underlay" ]] || die "no ROS 2 underlay at $underlay (install ROS 2 or pass --underlay FILE)"
set +u   # ROS setup scripts read unset variables
# shellcheck disable=SC1090
source "$underlay"
set -u
command -v colcon >/dev/null || die "colcon not found (apt-get install python3-colcon-common-extensions)"
command -v python3 >/dev/null || die "python3 not found after sourcing $underlay"
echo "install_workspace.sh: ROS 2 ${ROS_DISTRO:-?} from $underlay, python3 = $(command -v python3), workspace $workspace"

if [[ $run_rosdep -eq 1 ]]; then
  command -v rosdep >/dev/null || die "rosdep not found (apt-get install python3-rosdep; or --skip-rosdep)"
  rosdep install --from-paths "$here" --ignore-src -y -r
fi

if [[ $pip_mode != skip ]]; then
  # Pins of what the platform installed and pip must keep; fails when torch/torchvision are missing.
  constraints="$workspace/cgrs_ros_pip_constraints.txt"
  python3 - "$constraints" <<'PY' || exit 2
import sys
from importlib.metadata import PackageNotFoundError, version

KEEP = ("torch", "torchvision", "numpy")       # never replaced by pip
REQUIRED = {"torch": "torch", "torchvision": "torchvision"}
pins = []
for name in KEEP:
    try:
        pins.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        if name in REQUIRED:
            sys.exit(f"install_workspace.sh: {name} is not installed for {sys.executable}: install the "
                     f"platform's build first (Jetson: the JetPack wheel or a jetson-containers image; "
                     f"x86: pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu)")
with open(sys.argv[1], "w") as out:
    out.write("# Installed by the platform; pip must not replace them (scripts/install_workspace.sh).\n")
    out.write("\n".join(pins) + "\n")
print("install_workspace.sh: keeping " + ", ".join(pins))
PY
  # The libraries: a workspace profile's exact lock (resolved for its Python and platform against
  # the torch/numpy the platform provides, which it never lists) or today's pins.
  requirements="$here/requirements-ml.txt"
  if [[ $profile == auto ]]; then
    target="$(python3 -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())')"
    for lock in "$here"/requirements/locks/*.txt; do
      grep -q '^# provides:' "$lock" || continue          # a full venv lock, not a workspace profile
      if [[ "$(sed -n 's/^# python: *//p' "$lock") $(sed -n 's/^# platform: *manylinux_[0-9]*_[0-9]*_//p' "$lock")" == "$target" ]]; then
        requirements="$lock"
      fi
    done
  else
    requirements="$here/requirements/locks/$profile.txt"
    [[ -f "$requirements" ]] || die "no profile $profile (requirements/locks/: $(cd "$here/requirements/locks" && ls | sed 's/\.txt$//' | tr '\n' ' '))"
  fi
  echo "install_workspace.sh: Python libraries from ${requirements#"$here"/}"
  dry=()
  [[ $pip_mode == "dry-run" ]] && dry=(--dry-run)
  python3 -m pip install "${dry[@]}" "${pip_args[@]}" -r "$requirements" -c "$constraints"
fi

cd "$workspace"
colcon build --base-paths "$here" "$@"
echo "install_workspace.sh: built; run: source $workspace/install/setup.bash && ros2 launch cgrs_ros cgrs.launch.py"
