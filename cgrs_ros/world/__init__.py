"""A procedural aerial world for training and testing caption-guided retrieval without real data.

Deterministic from a seed: places (a distinctively roofed building and 2-3 neighbours on named
sides) on a WGS-84 footprint grid, each seen from one satellite, several drone and one ground
view, with GeoText-style captions per image and differently worded place-level queries.
Typical worlds: seed 1 = train, 2 = validation, 3 = test.
"""
from .generate import GENERATOR_VERSION, WorldSpec, generate_world

__all__ = ["GENERATOR_VERSION", "WorldSpec", "generate_world"]
