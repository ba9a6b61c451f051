"""Shared fixtures: a private cache folder so tests never touch the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache")
    os.environ["SPARSECAP_CACHE"] = str(path)
    return path
