"""The node as a process, as ros2 launch, systemd or a container runtime run it (issue 33): SIGINT and
SIGTERM end it with rc 0 and no error line; after ``kill -9``, a restart with ``autostart`` is active
and answering again (what ``respawn:=true`` does); a remapped ``~/goal``; a wrong parameter type in a
params file refused in one line; the first-use index build reported as log lines, and Python
logging routed through the ROS logger (no bare ``WARNING:root:`` line).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ros_support import require_ros

require_ros()


def node_params(tiny_engine_files, **extra) -> dict:
    engine_config, index_dir = tiny_engine_files
    return {"engine_config": str(engine_config), "index_dir": str(index_dir), "device": "cpu",
            "publish_image": False, "autostart": True, **extra}


def wait_active(client, process, log: Path, timeout: float = 120.0) -> None:
    client.wait_for_node(timeout=60.0)

    def active() -> bool:
        assert process.poll() is None, f"the node exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:   # (after a kill -9, discovery may still list the dead process's services for a while)
            return client.get_state(timeout=2.0) == "active"
        except TimeoutError:
            return False

    client.wait_until(active, timeout, "the node to be active", period=0.2)


@pytest.fixture()
def started(ros_domain):
    """start(params, log, ...) -> a node process, killed at the end of the test if still running (a node
    left behind would answer the next test's client)."""
    from cgrs_ros.ros.client import start_node_process

    processes = []

    def start(params=None, log=None, **kwargs):
        processes.append(start_node_process(params, log_path=log, domain_id=ros_domain, **kwargs))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10.0)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "[ERROR]" in line or "Traceback" in line]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_an_active_node_with_rc_0_and_no_error(sig, tiny_engine_files, ros_context, started,
                                                             tmp_path):
    from cgrs_ros.ros.client import CGRSClient

    log = tmp_path / "node.log"
    process = started(node_params(tiny_engine_files), log)
    client = CGRSClient(context=ros_context)
    try:
        wait_active(client, process, log)
        status, result, _ = client.locate("a red roof")
        assert status == "succeeded", (result.message, log.read_text()[-3000:])
    finally:
        client.close()
    process.send_signal(sig)
    try:
        code = process.wait(30.0)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert error_lines(text) == [], text[-3000:]


def test_after_kill_9_a_restart_with_autostart_is_active_and_answering(tiny_engine_files, ros_context, started,
                                                                        tmp_path):
    """What launch's respawn does: the same command again.  The node drives its own transitions."""
    from cgrs_ros.ros.client import CGRSClient, stop_node_process

    log = tmp_path / "node.log"
    params = node_params(tiny_engine_files)
    process = started(params, log)
    client = CGRSClient(context=ros_context)
    try:
        wait_active(client, process, log)
        process.send_signal(signal.SIGKILL)
        assert process.wait(10.0) == -signal.SIGKILL
        process = started(params, log)
        wait_active(client, process, log)
        status, result, _ = client.locate("the building with the red roof")
        assert status == "succeeded" and result.matches.outcome == result.matches.OUTCOME_NOT_CONFIDENT, \
            (result.message, log.read_text()[-3000:])
        assert result.matches.matches
    finally:
        client.close()
        code = stop_node_process(process)
    assert code == 0, log.read_text()[-3000:]


def test_goal_topic_remapped(tiny_engine_files, ros_context, started, tmp_path):
    """`-r ~/goal:=/mission/goal` (what cgrs.launch.py's goal_topic:= passes) moves the goal input."""
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    from cgrs_ros.ros.client import CGRSClient, stop_node_process

    log = tmp_path / "node.log"
    process = started(node_params(tiny_engine_files), log, remappings={"~/goal": "/mission/goal"})
    client = CGRSClient(context=ros_context)
    publisher = client.node.create_publisher(String, "/mission/goal", QoSProfile(depth=1))
    try:
        wait_active(client, process, log)
        client.wait_until(lambda: publisher.get_subscription_count() > 0, 20.0, "the node on /mission/goal")
        client.wait_until(lambda: client._subs["matches"].get_publisher_count() > 0, 20.0, "~/matches")
        assert client.goal_pub.get_subscription_count() == 0
        start = client.count("matches")
        publisher.publish(String(data="a red roof from the mission"))
        msg = client.wait_for_query("a red roof from the mission", start)
        assert msg.outcome in (msg.OUTCOME_OK, msg.OUTCOME_NOT_CONFIDENT)
    finally:
        client.close()
        code = stop_node_process(process)
    assert code == 0, log.read_text()[-3000:]


def test_a_wrong_type_in_the_params_file_is_refused_in_one_line(tmp_path, started):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    top_k: many\n")
    log = tmp_path / "node.log"
    process = started(None, log, params_file=params)
    assert process.wait(60.0) == 2
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "top_k" in lines[0] and "cgrs_node: bad parameter value" in lines[0], lines


def test_first_use_index_build_reports_progress_lines_through_the_ros_logger(tiny_engine_config_path, tmp_path,
                                                                             ros_context, started):
    """index_dir '' with an empty CGRS_HOME: configure generates and indexes the demo world."""
    from cgrs_ros.ros.client import CGRSClient, stop_node_process

    log = tmp_path / "node.log"
    env = dict(os.environ, CGRS_HOME=str(tmp_path / "cgrs_home"))
    process = started({"engine_config": str(tiny_engine_config_path), "device": "cpu", "publish_image": False,
                       "autostart": True}, log, env=env)
    client = CGRSClient(context=ros_context)
    try:
        wait_active(client, process, log, timeout=600.0)
    finally:
        client.close()
        code = stop_node_process(process)
    text = log.read_text()
    assert code == 0, text[-3000:]
    progress = re.findall(r"^\[INFO\] \[[\d.]+\] \[cgrs_node\]: indexing: ([\d,]+) / ([\d,]+) images, (\d+)%(.*)$",
                          text, flags=re.M)
    assert len(progress) >= 2, text[-3000:]
    done, total = [int(x.replace(",", "")) for x in progress[-1][:2]]
    assert done == total and progress[-1][2] == "100"
    assert progress[0][0] == "0" and len(progress) <= 12     # bounded: start, <= 10 steps, end
    assert "WARNING:root" not in text and "\r" not in text
    for line in filter(None, text.splitlines()):    # every line is a ROS log line (or the traceback of one)
        assert line.startswith(("[INFO]", "[WARN]", "[ERROR]", "[DEBUG]", "  ", "Traceback")), text[-4000:]
    assert error_lines(text) == [], text[-3000:]


def test_python_logging_and_warnings_go_through_the_ros_logger():
    """A bare `logging.warning` (what prints `WARNING:root:...`) and `warnings.warn` in a node's process."""
    script = (
        "import logging, warnings, rclpy\n"
        "from cgrs_ros.ros.log_bridge import route_python_logging\n"
        "rclpy.init()\n"
        "node = rclpy.create_node('bridge_probe')\n"
        "route_python_logging(node.get_logger())\n"
        "logging.warning('Model cgrs-tiny-clip initialized partially.')\n"
        "logging.getLogger('some.library').error('a library error')\n"
        "logging.getLogger('some.library').info('not shown: below the root level')\n"
        "warnings.warn('an old API', DeprecationWarning)\n"
        "node.destroy_node(); rclpy.shutdown()\n")
    env = dict(os.environ, RCUTILS_COLORIZED_OUTPUT="0", PYTHONWARNINGS="always")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "WARNING:root" not in text
    assert re.search(r"^\[WARN\] \[[\d.]+\] \[bridge_probe\]: Model cgrs-tiny-clip initialized partially\.$",
                     text, flags=re.M), text
    assert re.search(r"^\[ERROR\] \[[\d.]+\] \[bridge_probe\]: \[some.library\] a library error$", text,
                     flags=re.M), text
    assert "not shown" not in text
    assert re.search(r"^\[WARN\] .*DeprecationWarning: an old API", text, flags=re.M), text


def test_progress_lines_are_bounded_and_end_at_the_total():
    from cgrs_ros.ros.log_bridge import ProgressLines

    lines, now = [], [0.0]

    class Log:
        def info(self, text):
            lines.append(text)

    bars = ProgressLines(Log(), period_s=5.0, step=0.1, clock=lambda: now[0])
    with bars(total=3000, initial=0, unit="img", desc="indexing") as bar:
        for _ in range(300):                  # 10 images per 0.1 s: 1,200 images after 12 s
            now[0] += 0.1
            bar.update(10)
    assert lines[0] == "indexing: 0 / 3,000 images, 0%"
    assert lines[4] == "indexing: 1,200 / 3,000 images, 40%, ETA 18 s"
    assert lines[-1] == "indexing: 3,000 / 3,000 images, 100%, 30 s"
    assert len(lines) == 11
    lines.clear()
    with bars(total=100, initial=100, unit="img", desc="indexing"):   # nothing left to do
        pass
    assert lines == ["indexing: 100 / 100 images, 100%", "indexing: 100 / 100 images, 100%, 0 s"]
