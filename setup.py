"""pip install of the cgrs_ros Python package (core + ROS node) and its commands.

In a colcon workspace the package is built by CMakeLists.txt (ament_cmake, which also generates
the msg/action interfaces); here pip installs the same Python package for venv users and CI.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

# The supported range of each library (requirements/ranges.txt, which the profile locks are
# resolved from), but torch and torchvision: those are the platform's build, and JetPack's
# "2.5.0a0+nv24.08" is a pre-release that no ">=2.5" admits, so pip would try to replace it.
PLATFORM_OWN = ("torch", "torchvision")
RANGES = [line.split("#")[0].strip()
          for line in (Path(__file__).parent / "requirements" / "ranges.txt").read_text().splitlines()]
INSTALL_REQUIRES = [r for r in RANGES if r and re.split(r"[<>=!~;\[ ]", r)[0] not in PLATFORM_OWN]

setup(
    name="cgrs_ros",
    version="0.1.0",
    description="Caption-Guided Retrieval System: language goals to geo-located image matches for drones",
    license="Apache-2.0",
    # the oldest profile's Python (jetpack6-py310-aarch64: ROS 2 Humble on JetPack 6 / Ubuntu 22.04)
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    packages=find_packages(include=["cgrs_ros", "cgrs_ros.*"]),
    package_data={"cgrs_ros": ["resources/*.yaml", "resources/**/*"]},
    include_package_data=True,
    # distributed index builds (cgrs-index --ray, cgrs_ros.distributed); not needed otherwise
    extras_require={"distributed": ["ray>=2.9"]},
    entry_points={
        "console_scripts": [
            "cgrs-index = cgrs_ros.cli.index:main",
            "cgrs-query = cgrs_ros.cli.query:main",
            "cgrs-eval = cgrs_ros.cli.evaluate:main",
            "cgrs-submit = cgrs_ros.cli.submit:main",
            "cgrs-score = cgrs_ros.cli.score:main",
            "cgrs-demo = cgrs_ros.cli.demo:main",
            "cgrs-world = cgrs_ros.world.cli:main",
            "cgrs-train = cgrs_ros.training.cli:main",
            "cgrs-node = cgrs_ros.ros.node:main",
            "cgrs-ros-demo = cgrs_ros.ros.demo:main",
        ],
    },
)
