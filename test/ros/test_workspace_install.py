"""The ROS-workspace install path end to end: scripts/install_workspace.sh over a separate ROS 2
underlay, then one goal through the node started from the workspace's install tree.

The underlay is the venv's ROS 2 Kilted pip wheels laid out as /opt/ros/<distro> would be, without
any of cgrs_ros (test/ros/pip_underlay.py), used by the base Python with nothing but the sourced
setup files -- so the node can only import cgrs_ros, its interfaces and its data from the install
tree colcon made.  rosdep is skipped (no apt here); the pip step runs as a dry run, which must
find every requirement satisfied and keep the installed torch, torchvision and numpy.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from pip_underlay import clean_environment, make_pip_underlay
from ros_support import ros_required

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
BUILD_TIMEOUT = 600.0   # ~30-40 s on 2 cores; generous for a busy CI machine


def sourced_environment(env: dict, *setup_files: Path) -> dict:
    """`env` after sourcing the setup files in a bash, as a user's shell would."""
    script = "".join(f'source "{f}" && ' for f in setup_files) + "env -0"
    out = subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True).stdout
    return dict(line.split("=", 1) for line in out.decode().split("\0") if "=" in line)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    colcon = VENV / "bin" / "colcon"                  # requirements.txt installs it into the venv
    if not colcon.exists():
        colcon = Path(shutil.which("colcon") or colcon)
    if not colcon.exists():
        if ros_required():
            pytest.fail("colcon is missing (requirements.txt installs colcon-common-extensions)", pytrace=False)
        pytest.skip("colcon not installed")
    root = tmp_path_factory.mktemp("ros_workspace")
    tools = root / "tools"          # what apt's python3-colcon-common-extensions puts on PATH
    tools.mkdir()
    (tools / "colcon").symlink_to(colcon)
    underlay = make_pip_underlay(VENV, root / "underlay")
    env = clean_environment(tools)
    ws = root / "ws"
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "install_workspace.sh"), "--workspace", str(ws),
         "--underlay", str(underlay), "--skip-rosdep", "--pip-dry-run",
         "--", "--event-handlers", "console_cohesion+"],
        env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    output = build.stdout + build.stderr
    assert build.returncode == 0, f"install_workspace.sh failed:\n{output[-4000:]}"
    return {"ws": ws, "underlay": underlay, "env": env, "output": output}


def test_pip_step_keeps_the_platform_torch(workspace):
    constraints = (workspace["ws"] / "cgrs_ros_pip_constraints.txt").read_text().split()
    for name in ("torch", "torchvision", "numpy"):
        assert f"{name}=={version(name)}" in constraints
    planned = [line for line in workspace["output"].splitlines() if line.startswith("Would install")]
    assert planned == [], planned       # everything satisfied: in particular torch is not replaced


def test_install_tree_is_what_the_node_runs(workspace):
    install = workspace["ws"] / "install"
    env = sourced_environment(workspace["env"], workspace["underlay"], install / "setup.bash")
    probe = ("import cgrs_ros, cgrs_ros.msg, cgrs_ros.action, cgrs_ros.engine\n"
             "from ament_index_python.packages import get_package_share_directory as share\n"
             "print(cgrs_ros.__file__, cgrs_ros.msg.__file__, cgrs_ros.engine.__file__, share('cgrs_ros'))")
    paths = subprocess.run(["python3", "-c", probe], env=env, check=True, capture_output=True, text=True,
                           cwd=workspace["ws"]).stdout.split()   # not the repository: "" on sys.path
    assert all(path.startswith(str(install / "cgrs_ros")) for path in paths), paths
    node = install / "cgrs_ros" / "lib" / "cgrs_ros" / "cgrs_node"
    assert node.read_text().splitlines()[0] == f"#!{workspace['underlay'].parent / 'bin' / 'python3'}"
    for shared in ("launch/cgrs.launch.py", "config/cgrs_node.yaml"):
        assert (install / "cgrs_ros" / "share" / "cgrs_ros" / shared).is_file()


def test_installed_node_answers_a_goal(workspace, tiny_engine_files, ros_context, ros_domain, tmp_path):
    from cgrs_ros.ros.client import CGRSClient, start_node_process, stop_node_process

    install = workspace["ws"] / "install"
    env = sourced_environment(workspace["env"], workspace["underlay"], install / "setup.bash")
    engine_config, index_dir = tiny_engine_files
    log = tmp_path / "node.log"
    process = start_node_process(
        {"engine_config": str(engine_config), "index_dir": str(index_dir), "device": "cpu",
         "publish_image": False, "autostart": True},
        params_file=install / "cgrs_ros" / "share" / "cgrs_ros" / "config" / "cgrs_node.yaml",
        log_path=log, domain_id=ros_domain, env=env,
        executable=install / "cgrs_ros" / "lib" / "cgrs_ros" / "cgrs_node")
    client = CGRSClient(context=ros_context)
    try:
        client.wait_for_node(timeout=60.0)
        client.wait_until(lambda: client.get_state() == "active", timeout=120.0, what="the node to be active",
                          period=0.5)
        status, result, _ = client.locate("the building with the red roof", timeout=60.0)
        assert status == "succeeded", (result.message, log.read_text()[-2000:])
        matches = result.matches
        assert matches.status.startswith("ok: reranked"), matches.status
        assert matches.matches and all(m.place_id.startswith("p0") and m.has_target for m in matches.matches)
    finally:
        client.close()
        code = stop_node_process(process)
    assert code == 0, log.read_text()[-2000:]
