#!/usr/bin/env bash
# Build the cgrs_ros ROS 2 interfaces (msg/RankedMatch, msg/RankedMatches, action/Locate) with CMake
# from the pip ROS 2 wheels and install them into a virtual environment (prefix = the venv).
# geographic_msgs is not on PyPI: where none is importable, the stand-in with its standard
# definitions (test/ros/interfaces/geographic_msgs: GeoPoint, GeoPose, GeoPoseStamped) is built too,
# so the node's GeoPoseStamped output runs (and is tested) in the venv.
#
#   scripts/build_interfaces.sh [VENV]      # VENV defaults to $VIRTUAL_ENV, else ./.venv
#
# Installs <venv>/lib/python3.X/site-packages/cgrs_ros/{msg,action,*.so} (no __init__.py: the
# pip-installed editable source package joins them via pkgutil.extend_path), the C/C++ headers and
# libraries, share/cgrs_ros/{launch,config}, lib/cgrs_ros/cgrs_node and the ament index entry.
# Run it after `pip install -r requirements.txt` and before `pip install -e . --no-deps`
# (either order works; it must be rerun after editing msg/ or action/).  Takes ~25-40 s on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${VIRTUAL_ENV:-$here/.venv}}"
venv="$(cd "$venv" && pwd)"
python="$venv/bin/python"
build_dir="${CGRS_BUILD_DIR:-$here/build}"
jobs="${CGRS_BUILD_JOBS:-2}"

if [[ ! -x "$python" ]]; then
  echo "build_interfaces.sh: no Python at $python (pass the venv folder or activate it)" >&2
  exit 2
fi
if ! "$python" -c "import catkin_pkg, rosidl_generator_py" 2>/dev/null; then
  echo "build_interfaces.sh: the ROS build wheels are missing in $venv; run" >&2
  echo "  $python -m pip install -r $here/requirements.txt" >&2
  exit 2
fi
if [[ ! -f "$venv/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ]]; then
  echo "build_interfaces.sh: rosidl_default_generators not found under $venv/share" >&2
  exit 2
fi
for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "build_interfaces.sh: '$tool' not found (apt-get install cmake g++)" >&2; exit 2; }
done

# The venv's bin first: rosidl generators and ament run "python3" helpers.
export PATH="$venv/bin:$PATH"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"

# A build folder configured for another venv or source tree gives confusing errors: start clean.
if [[ -f "$build_dir/CMakeCache.txt" ]] && \
   ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=$venv" "$build_dir/CMakeCache.txt"; then
  echo "build_interfaces.sh: $build_dir was configured for another prefix; removing it"
  rm -rf "$build_dir"
fi

if ! "$python" -c "import geographic_msgs.msg" 2>/dev/null; then
  geo_build="$build_dir/_geographic_msgs"   # inside build/: removed with it
  if [[ -f "$geo_build/CMakeCache.txt" ]] && ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=$venv" "$geo_build/CMakeCache.txt"; then
    rm -rf "$geo_build"
  fi
  cmake -S "$here/test/ros/interfaces/geographic_msgs" -B "$geo_build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$python" -DPython3_FIND_VIRTUALENV=ONLY \
    -DBUILD_TESTING=OFF
  cmake --build "$geo_build" -j "$jobs"
  cmake --install "$geo_build"
fi

cmake -S "$here" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$python" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DCGRS_INSTALL_PYTHON=OFF \
  -DBUILD_TESTING=OFF
cmake --build "$build_dir" -j "$jobs"
cmake --install "$build_dir"

site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ -f "$site/cgrs_ros/__init__.py" && ! -s "$site/cgrs_ros/__init__.py" ]]; then
  # Never leave rosidl's empty package __init__ here: it would shadow the editable source package.
  # (A non-empty one comes from a regular `pip install .` of the source package: keep it.)
  rm -f "$site/cgrs_ros/__init__.py"
fi
echo "build_interfaces.sh: installed cgrs_ros interfaces into $venv ($site/cgrs_ros)"
