"""Shared fixtures: a throwaway project folder with the shipped voices and a tiny script."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UPDATE_GOLDEN = os.environ.get("CALMPLACE_UPDATE_GOLDEN") == "1"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite the golden .expected files")


@pytest.fixture
def update_golden(request) -> bool:
    return UPDATE_GOLDEN or request.config.getoption("--update-golden")


TINY_SCRIPT = """\
title: Tiny Calm
collection: Test Collection
author: Test Author
description: A very short exercise used by the tests.
locales: [en-GB, en-US]
ambience: {sound: stream, level_db: -20, duck_db: 6, fade_in: 1s, fade_out: 2s}
lead_in: 2s
tail: 3s
spelling:
  en-US: {colour: color}
sections:
  - title: Arriving
    text: |
      Settle in and notice the colour of the light. [pause 4s]
      Let the breath slow down.
    pause_after: 2s
  - title: Resting
    text: |
      Rest here for a while. [pause 6s]
      Come back when you are ready.
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder: scripts/tiny.yaml, the repository's voices, an empty ambience/."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "tiny.yaml").write_text(TINY_SCRIPT)
    shutil.copytree(REPO / "voices", tmp_path / "voices", ignore=shutil.ignore_patterns("*/"))
    (tmp_path / "ambience").mkdir()
    return tmp_path
