"""The core's tests; their fixtures come from the kit every plugin's tests use too."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
