"""launch/cgrs.launch.py and cgrs_sim.launch.py: always byte-compiled; introspected and *run* (real
launch service, real node processes) where launch/launch_ros are installed.

``launch``/``launch_ros`` are not on PyPI, so in the pip venv only the syntax and params-file checks
run and the rest skips, saying so.  CGRS_REQUIRE_ROS (rclpy and the interfaces, which the pip venv
has) does not cover them; on a ROS 2 install (Humble/Jazzy/Kilted) set CGRS_REQUIRE_LAUNCH=1 to make a
missing launch a failure instead of a skip.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import py_compile
import sys
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


def _require_launch() -> None:
    """Skip (or, with CGRS_REQUIRE_LAUNCH=1, fail) where launch / launch_ros cannot be imported."""
    missing = []
    for name, attribute in (("launch", "LaunchDescription"), ("launch_ros", "actions")):
        try:   # (the repository's launch/ folder is a namespace package "launch": not the library)
            getattr(importlib.import_module(name), attribute)
        except (ImportError, AttributeError):
            missing.append(name)
    if not missing:
        return
    reason = (f"{' and '.join(missing)} not installed: not on PyPI, they come with a ROS 2 install "
              "(CGRS_REQUIRE_ROS covers rclpy and the interfaces only; set CGRS_REQUIRE_LAUNCH=1 on a ROS "
              "install to fail here instead)")
    if os.environ.get("CGRS_REQUIRE_LAUNCH", "").lower() not in ("", "0", "false"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _load_module(path: Path = LAUNCH_FILE):
    _require_launch()
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NODE_ARGUMENTS = {"params_file", "extra_params_file", "namespace", "device", "forward_to_nav2", "min_confidence",
                  "goal_topic", "use_sim_time", "log_level", "autostart", "respawn"}


def _context(description, **given):
    """A LaunchContext with the description's argument defaults and the ``given`` ones."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions

    context = LaunchContext()
    for a in description.entities:
        if isinstance(a, DeclareLaunchArgument) and a.default_value is not None:
            context.launch_configurations[a.name] = perform_substitutions(context, a.default_value)
    context.launch_configurations.update(given)
    return context


def _node_entities(module, **given):
    from launch.actions import OpaqueFunction

    description = module.generate_launch_description()
    opaque = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    assert len(opaque) == 1
    return opaque[0].execute(_context(description, **given)) or []


def test_launch_description_declares_the_arguments_and_sends_no_transitions():
    _require_launch()
    from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler

    module = _load_module()
    description = module.generate_launch_description()
    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert names == NODE_ARGUMENTS
    # the node drives its own lifecycle on autostart: the launch emits and awaits no transitions
    assert not any(isinstance(e, (EmitEvent, RegisterEventHandler)) for e in description.entities)
    assert module.DEFAULT_PARAMS == str(LAUNCH_FILE.parent.parent / "config" / "cgrs_node.yaml")


def test_launch_arguments_reach_the_node_and_the_default_params_file_is_passed_once():
    _require_launch()
    from launch.actions import RegisterEventHandler
    from launch_ros.actions import LifecycleNode

    module = _load_module()
    entities = _node_entities(module)
    assert [type(e) for e in entities] == [LifecycleNode, RegisterEventHandler]     # + shutdown when it exits
    assert len(_node_entities(module, respawn="true")) == 1                         # respawn: no shutdown

    description = module.generate_launch_description()

    def settings(**given):
        context = _context(description, **given)
        return module.node_settings(lambda name: context.launch_configurations[name])

    assert settings() == {"namespace": "", "parameters": [module.DEFAULT_PARAMS, {"autostart": True,
                                                                                    "use_sim_time": False}],
                          "remappings": [], "ros_arguments": ["--log-level", "info"], "respawn": False}
    given = settings(forward_to_nav2="true", min_confidence="0.9", device="cpu", goal_topic="/mission/goal",
                     extra_params_file="/w/datum.yaml", respawn="true", autostart="false", log_level="debug",
                     namespace="drone1")
    assert given == {"namespace": "drone1", "parameters": [module.DEFAULT_PARAMS, "/w/datum.yaml", {
        "autostart": False, "use_sim_time": False, "device": "cpu", "forward_to_nav2": True, "min_confidence": 0.9}],
        "remappings": [("~/goal", "/mission/goal")], "ros_arguments": ["--log-level", "debug"], "respawn": True}
    with pytest.raises(RuntimeError, match="min_confidence:='high' is not a number"):
        settings(min_confidence="high")


def test_the_exit_handler_shuts_the_launch_down_once():
    """The node's exit shuts the launch down -- but not again while it is already shutting down."""
    _require_launch()
    from launch import LaunchContext
    from launch.actions import EmitEvent
    from launch.events import Shutdown

    module = _load_module()
    event = type("Exited", (), {"returncode": 1})()
    context = LaunchContext()
    entities = module._shutdown_unless_shutting_down(event, context)
    assert any(isinstance(e, EmitEvent) and isinstance(e.event, Shutdown) for e in entities)
    context._set_is_shutdown(True)
    assert module._shutdown_unless_shutting_down(event, context) is None


def test_sim_launch_describes_itself_without_gazebo_and_names_the_package_to_install(monkeypatch):
    """--show-args needs only generate_launch_description(); running it without ros_gz_sim: one line."""
    _require_launch()
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
    from launch_ros.actions import Node

    from cgrs_ros.world.gazebo import DATUM_PARAMS_FILE, WORLD_FILE

    module = _load_module(SIM_LAUNCH_FILE)
    assert (module.WORLD_FILE, module.DATUM_PARAMS_FILE) == (WORLD_FILE, DATUM_PARAMS_FILE)
    description = module.generate_launch_description()
    arguments = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert arguments == {"world_dir", "gz_args"} | set(module.FORWARDED)
    assert set(module.FORWARDED) == NODE_ARGUMENTS - {"extra_params_file", "use_sim_time"}
    context = _context(description, world_dir="/worlds/w/gazebo")
    include = next(e for e in description.entities if isinstance(e, IncludeLaunchDescription))
    node_arguments = {k: _text(context, v) for k, v in include.launch_arguments}
    assert node_arguments["use_sim_time"] == "true"
    assert node_arguments["extra_params_file"] == "/worlds/w/gazebo/cgrs_node_datum.yaml"
    assert os.path.basename(node_arguments["params_file"]) == "cgrs_node.yaml"
    bridges = [e for e in description.entities if isinstance(e, Node)]
    assert [(_text(context, b.node_package), _text(context, b.node_executable)) for b in bridges] == [
        ("ros_gz_bridge", "parameter_bridge")]
    assert module.CLOCK_BRIDGE == "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"    # ROS <- Gazebo only
    gazebo = next(e for e in description.entities if isinstance(e, OpaqueFunction))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(Path(sys.prefix)))      # (a prefix without ros_gz_sim)
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        get_package_share_directory("ros_gz_sim")
        entities = gazebo.execute(context)           # a ROS install with Gazebo: it includes gz_sim
        assert isinstance(entities[0], IncludeLaunchDescription)
    except PackageNotFoundError:
        with pytest.raises(RuntimeError) as caught:
            gazebo.execute(context)
        assert "\n" not in str(caught.value) and "apt install ros-$ROS_DISTRO-ros-gz" in str(caught.value)


def _text(context, value) -> str:
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    return perform_substitutions(context, normalize_to_list_of_substitutions(value))


# -- real launches: `ros2 launch` is ros2cli (not on PyPI); this is what it runs ---------------------
RUNNER = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService(argv=sys.argv[2:])
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]]))
sys.exit(service.run())
"""


def _start_launch(log: Path, domain: int, *arguments: str):
    import subprocess

    from cgrs_ros.ros.client import ros_environment

    env = ros_environment(domain)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [sys.prefix, env.get("AMENT_PREFIX_PATH")]))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", RUNNER, str(LAUNCH_FILE), *arguments], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _node_pids(launch_pid: int) -> list[int]:
    """The cgrs_node processes the launch started (its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == launch_pid and any(b"cgrs_node" in c for c in cmdline):
                pids.append(int(entry.name))
    return pids


@pytest.fixture()
def launch_params(tiny_engine_files, tmp_path) -> Path:
    _require_launch()
    if not (Path(sys.prefix) / "lib" / "cgrs_ros" / "cgrs_node").is_file():
        pytest.skip("lib/cgrs_ros/cgrs_node is not installed (scripts/build_interfaces.sh installs it)")
    engine_config, index_dir = tiny_engine_files
    params = tmp_path / "params.yaml"
    params.write_text(f"""/**:
  ros__parameters:
    engine_config: "{engine_config}"
    index_dir: "{index_dir}"
    device: cpu
    publish_image: false
""")
    return params


@pytest.mark.xfail(reason="seen with launch 3.7.1 from source: respawn works, but the node needed more than "
                          "launch's 5 s after SIGINT and was escalated to SIGTERM ([ERROR] line): open", strict=False)
def test_launch_respawns_a_killed_node_active_and_ends_on_sigint_with_rc_0(launch_params, ros_context, ros_domain,
                                                                          tmp_path):
    """kill -9 of the node with respawn:=true: the new process is active again and answering; a launch
    argument reaches the node; the default params file is passed once; SIGINT of the launch: rc 0, no error."""
    import signal

    from cgrs_ros.ros.client import CGRSClient

    log = tmp_path / "launch.log"
    launch = _start_launch(log, ros_domain, f"params_file:={launch_params}", "respawn:=true",
                           "forward_to_nav2:=true", "min_confidence:=0.9")
    client = CGRSClient(context=ros_context)
    try:
        def active() -> bool:
            assert launch.poll() is None, log.read_text()[-3000:]
            try:   # (after a kill -9, discovery may still list the dead process's services for a while)
                return client.get_state(timeout=2.0) == "active"
            except TimeoutError:
                return False

        client.wait_for_node(timeout=90.0)
        client.wait_until(active, 180.0, "the launched node to be active", period=0.5)
        assert client.get_parameters(["forward_to_nav2", "min_confidence", "device"]) == {
            "forward_to_nav2": True, "min_confidence": 0.9, "device": "cpu"}
        (pid,) = _node_pids(launch.pid)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline.count(str(launch_params).encode()) == 1
        os.kill(pid, signal.SIGKILL)
        client.wait_until(lambda: _node_pids(launch.pid) not in ([], [pid]), 60.0, "the respawned node")
        client.wait_until(active, 180.0, "the respawned node to be active", period=0.5)
        status, result, _ = client.locate("the building with the red roof", timeout=60.0)
        assert status == "succeeded" and result.matches.matches, result.message
    finally:
        client.close()
        launch.send_signal(signal.SIGINT)
        try:
            code = launch.wait(60.0)
        finally:
            if launch.poll() is None:
                launch.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "[ERROR]" not in text.split("process has died")[-1] or "exit code -9" in text, text[-3000:]
    after_kill = text.split("exit code -9")[-1]
    assert "[ERROR]" not in after_kill and "Traceback" not in after_kill, after_kill[-3000:]


def test_launch_ends_on_sigterm_with_rc_0_and_no_error_line(launch_params, ros_context, ros_domain, tmp_path):
    import signal

    from cgrs_ros.ros.client import CGRSClient

    log = tmp_path / "launch.log"
    launch = _start_launch(log, ros_domain, f"params_file:={launch_params}")
    client = CGRSClient(context=ros_context)
    try:
        client.wait_for_node(timeout=90.0)
        client.wait_until(lambda: client.get_state(timeout=5.0) == "active", 180.0, "the node to be active", 0.5)
    finally:
        client.close()
        launch.send_signal(signal.SIGTERM)
        try:
            code = launch.wait(60.0)
        finally:
            if launch.poll() is None:
                launch.kill()
    text = log.read_text()
    assert code == 0 and "[ERROR]" not in text and "Traceback" not in text, text[-3000:]
