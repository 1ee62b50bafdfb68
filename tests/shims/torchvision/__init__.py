"""Test-only torchvision stand-in: see tests/shims/__init__.py. Only what the oracles import."""
from . import datasets, models, ops, transforms  # noqa: F401

__version__ = "0.28.0"
