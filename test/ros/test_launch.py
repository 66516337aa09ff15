"""launch/cgrs.launch.py and cgrs_sim.launch.py: always byte-compiled; introspected where launch/launch_ros
are installed (the simulation launch also needs ros_gz_sim in the ament index).

``launch``/``launch_ros`` are not on PyPI, so in the pip venv only the syntax check runs and the rest
skips; on a ROS 2 install (Humble/Jazzy/Kilted) with the package built it checks the description.
"""
from __future__ import annotations

import importlib.util
import os
import py_compile
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "cgrs.launch.py"
SIM_LAUNCH_FILE = LAUNCH_FILE.with_name("cgrs_sim.launch.py")


@pytest.mark.parametrize("path", [LAUNCH_FILE, SIM_LAUNCH_FILE], ids=lambda p: p.name)
def test_launch_file_compiles(path):
    py_compile.compile(str(path), doraise=True)


def test_params_file_is_a_ros_params_file():
    import yaml

    from ros_support import require_ros

    require_ros()
    from cgrs_ros.ros.parameters import BY_NAME, check_parameter, coerce

    data = yaml.safe_load((LAUNCH_FILE.parent.parent / "config" / "cgrs_node.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert set(params) <= set(BY_NAME), f"unknown parameters {set(params) - set(BY_NAME)}"
    for name, value in params.items():
        assert check_parameter(name, coerce(name, value)) is None, name


def test_a_gazebo_worlds_datum_file_is_a_ros_params_file_for_the_node(tmp_path):
    """cgrs_sim.launch.py applies it over params_file: only datum parameters, all valid, = world.sdf's."""
    import xml.etree.ElementTree as ET

    import yaml

    from ros_support import require_ros

    require_ros()
    from cgrs_ros.ros.parameters import BY_NAME, check_parameter, coerce
    from cgrs_ros.world import generate_world

    folder = generate_world(tmp_path / "w", 3, 1, views_drone=0, ground=False, size=32, gazebo=True,
                            progress=False) / "gazebo"
    params = yaml.safe_load((folder / "cgrs_node_datum.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == {"datum_latitude", "datum_longitude", "datum_altitude"} <= set(BY_NAME)
    for name, value in params.items():
        assert check_parameter(name, coerce(name, value)) is None, name
    origin = ET.parse(folder / "world.sdf").getroot().find("world/spherical_coordinates")
    assert [params["datum_latitude"], params["datum_longitude"], params["datum_altitude"]] == [
        float(origin.findtext(tag)) for tag in ("latitude_deg", "longitude_deg", "elevation")]


def test_yaml_booleans_and_integers_are_read_as_the_parameter_type():
    from ros_support import require_ros

    require_ros()
    from cgrs_ros.ros.parameters import check_parameter, coerce

    assert coerce("caption_mode", False) == "off"                     # caption_mode: off
    assert coerce("datum_altitude", 455) == 455.0 and check_parameter("datum_altitude", 455.0) is None
    assert "quote YAML words" in check_parameter("caption_mode", coerce("caption_mode", True))


def test_installed_node_executable_names_its_python(tmp_path):
    """lib/cgrs_ros/cgrs_node (built by CMake) must run the Python that has cgrs_ros, from a bare shell."""
    import subprocess
    import sys

    executable = Path(sys.prefix) / "lib" / "cgrs_ros" / "cgrs_node"
    if not executable.is_file():
        pytest.skip(f"{executable} not installed (scripts/build_interfaces.sh installs it)")
    shebang = executable.read_text().splitlines()[0]
    assert shebang.startswith("#!/") and not shebang.startswith("#!/usr/bin/env"), shebang
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([shebang[2:].strip(), "-c", "import cgrs_ros.ros.node"], env=bare, check=True, timeout=120)


def _load_module(path: Path = LAUNCH_FILE, packages: tuple[str, ...] = ("cgrs_ros",)):
    pytest.importorskip("launch", reason="launch is not installed (not on PyPI)")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (not on PyPI)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    for package in packages:
        try:
            get_package_share_directory(package)
        except (PackageNotFoundError, KeyError, ValueError):
            pytest.skip(f"{package} is not in the ament index (install it / build cgrs_ros, source the workspace)")
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_description():
    return _load_module().generate_launch_description()


def test_launch_description_declares_arguments_and_a_lifecycle_node():
    description = _load_description()
    from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
    from launch_ros.actions import LifecycleNode

    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"params_file", "extra_params_file", "namespace", "device", "use_sim_time", "autostart",
            "respawn"} <= names
    nodes = [e for e in description.entities if isinstance(e, LifecycleNode)]
    assert len(nodes) == 1
    assert any(isinstance(e, EmitEvent) for e in description.entities)          # configure
    assert sum(isinstance(e, RegisterEventHandler) for e in description.entities) >= 2  # exit, activate
    default_params = next(a for a in description.entities
                          if isinstance(a, DeclareLaunchArgument) and a.name == "params_file").default_value
    assert default_params and os.path.basename(default_params[0].text) == "cgrs_node.yaml"


def test_launch_shuts_down_when_the_node_exits():
    """Run the description's exit handler for a node that died: it must emit launch's Shutdown event."""
    description = _load_description()
    from launch import LaunchContext
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.events.process import ProcessExited
    from launch_ros.actions import LifecycleNode

    node = next(e for e in description.entities if isinstance(e, LifecycleNode))
    handlers = [e.event_handler for e in description.entities
                if isinstance(e, RegisterEventHandler) and isinstance(e.event_handler, OnProcessExit)]
    assert len(handlers) == 1
    context = LaunchContext()
    context.launch_configurations["respawn"] = "false"
    exited = ProcessExited(action=node, name="cgrs_node", cmd=["cgrs_node"], cwd=None, env=None, pid=1,
                           returncode=1)
    assert handlers[0].matches(exited)
    context.extend_locals({"event": exited})
    entities = handlers[0].handle(exited, context)
    assert any(isinstance(e, EmitEvent) and isinstance(e.event, Shutdown) for e in entities)


def test_sim_launch_starts_the_world_the_clock_bridge_and_the_node_on_sim_time():
    """Gazebo gets world_dir/world.sdf, the bridge /clock, cgrs.launch.py the world's datum and sim time."""
    module = _load_module(SIM_LAUNCH_FILE, ("cgrs_ros", "ros_gz_sim"))
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    from launch_ros.actions import Node

    from cgrs_ros.world.gazebo import DATUM_PARAMS_FILE, WORLD_FILE

    assert (module.WORLD_FILE, module.DATUM_PARAMS_FILE) == (WORLD_FILE, DATUM_PARAMS_FILE)
    description = module.generate_launch_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"world_dir", "gz_args", "params_file", "namespace", "device", "autostart", "respawn"} <= set(arguments)
    context = LaunchContext()
    context.launch_configurations.update({name: perform_substitutions(context, a.default_value or [])
                                          for name, a in arguments.items()})
    context.launch_configurations["world_dir"] = "/worlds/w/gazebo"

    def text(value) -> str:
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    includes = {}
    for include in (e for e in description.entities if isinstance(e, IncludeLaunchDescription)):
        include.launch_description_source.get_launch_description(context)
        includes[Path(include.launch_description_source.location).name] = {
            text(k): text(v) for k, v in include.launch_arguments}
    assert set(includes) == {"gz_sim.launch.py", "cgrs.launch.py"}
    assert includes["gz_sim.launch.py"]["gz_args"] == "-r /worlds/w/gazebo/world.sdf"
    node_arguments = includes["cgrs.launch.py"]
    assert node_arguments["use_sim_time"] == "true"
    assert node_arguments["extra_params_file"] == "/worlds/w/gazebo/cgrs_node_datum.yaml"
    assert os.path.basename(node_arguments["params_file"]) == "cgrs_node.yaml"
    bridges = [e for e in description.entities if isinstance(e, Node)]
    assert [(text(b.node_package), text(b.node_executable)) for b in bridges] == [("ros_gz_bridge",
                                                                                   "parameter_bridge")]
    assert module.CLOCK_BRIDGE == "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"    # ROS <- Gazebo only
