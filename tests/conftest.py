"""Shared fixtures: an isolated user voice folder and paths to the optional shared reference data."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

# A run started from a non-interactive shell's background job (`cmd &`) inherits SIGINT ignored, and so would every
# CLI process the tests start, so the Ctrl-C tests would test nothing. A Python-level handler here is reset to the
# default in each child at exec, so children see Ctrl-C as a user's terminal would send it.
signal.signal(signal.SIGINT, signal.default_int_handler)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "higgs-audio-examples"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Never touch the real user's voice library or caches."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HIGGS_VOICES_DIR", str(home / "voices"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HIGGS_QA", "off")  # random tiny checkpoints speak noise: tests that want the gate say --qa


@pytest.fixture
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not present")
    return REFERENCE
