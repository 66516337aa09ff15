"""The optional NavigateToPose client: sends a confident, forwarded target to a Nav2 action server
and reports how navigation ended in the node's log.  Off unless ``nav2_action`` names the server.

nav2_msgs is imported here only, when the client is made (it is no dependency of the node: not on
PyPI, and a drone stack may have no Nav2); ``parameters.check_parameter`` refuses ``nav2_action``
with the package to install where it is missing.
"""
from __future__ import annotations

from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup

_STATUS = {4: "succeeded", 5: "canceled", 6: "aborted"}   # action_msgs/GoalStatus


class Navigator:
    """One ActionClient of nav2_msgs/action/NavigateToPose; at most one navigation in flight (a newer
    target replaces it, as Nav2 preempts)."""

    def __init__(self, node, action_name: str):
        from nav2_msgs.action import NavigateToPose

        self._type, self._log, self.name = NavigateToPose, node.get_logger(), action_name
        self._client = ActionClient(node, NavigateToPose, action_name, callback_group=ReentrantCallbackGroup())

    def send(self, goal_id: str, pose) -> None:
        """Send ``pose`` (PoseStamped, map frame); never blocks the goal's answer."""
        if not self._client.server_is_ready():
            self._log.warning(f"goal {goal_id}: NavigateToPose server '{self.name}' is not available; "
                              "target not sent (it is on goal_pose)")
            return
        future = self._client.send_goal_async(self._type.Goal(pose=pose))
        future.add_done_callback(lambda f: self._accepted(goal_id, f))

    def _accepted(self, goal_id: str, future) -> None:
        handle = future.result()
        if not handle.accepted:
            self._log.warning(f"goal {goal_id}: NavigateToPose '{self.name}' rejected the target")
            return
        self._log.info(f"goal {goal_id}: NavigateToPose '{self.name}' accepted the target")
        handle.get_result_async().add_done_callback(lambda f: self._ended(goal_id, f))

    def _ended(self, goal_id: str, future) -> None:
        response = future.result()
        result = response.result
        detail = "".join(f", {name} {getattr(result, name)!r}" for name in ("error_code", "error_msg")
                         if getattr(result, name, None) not in (None, "", 0))
        self._log.info(f"goal {goal_id}: navigation {_STATUS.get(response.status, response.status)}{detail}")

    def destroy(self) -> None:
        self._client.destroy()
