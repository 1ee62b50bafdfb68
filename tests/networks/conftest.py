"""Fixtures for network tests."""
from __future__ import annotations

import copy

import pytest

from inpaintlab.tiny import build_tiny_models


@pytest.fixture(scope="session")
def _tiny_pair():
    unet, _, te = build_tiny_models(seed=0)
    return unet, te


@pytest.fixture
def tiny_models(_tiny_pair):
    """Fresh copies of a tiny (unet, text_encoder) per test: merges modify weights in place."""
    return copy.deepcopy(_tiny_pair)
