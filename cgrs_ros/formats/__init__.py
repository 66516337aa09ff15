"""Readers and writers of the public benchmark formats (pure Python: no rclpy, no torch).

- :mod:`.geotext`: GeoText-1652 annotation JSON -> :class:`~cgrs_ros.gallery.Gallery` + queries.
- :mod:`.robosense`: RoboSense 2025 Track 4 gallery folder, query file and ``submission.txt``
  (written and read back).
"""
from .geotext import geotext_platform, load_geotext
from .robosense import (is_track4_query_id, load_track4_gallery, load_track4_queries,
                        read_track4_submission, submission_query_id, write_track4_submission)

__all__ = ["geotext_platform", "is_track4_query_id", "load_geotext", "load_track4_gallery",
           "load_track4_queries", "read_track4_submission", "submission_query_id",
           "write_track4_submission"]
