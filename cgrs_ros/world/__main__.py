"""``python -m cgrs_ros.world``."""
import sys

from .cli import main

sys.exit(main())
