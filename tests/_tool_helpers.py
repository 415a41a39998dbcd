"""Run a ``tools/`` script in-process as ``python tools/NAME.py ARGS`` would, and return its exit code."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest


def run_tool(script: Path, argv: list[str]) -> int:
    """Execute ``script`` as ``__main__`` with ``argv``; the script must end in ``sys.exit``/``SystemExit``."""
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old
    return done.value.code
