"""Work keys: the short stable hashes that name a work item, a persona or a cached call. A leaf module,
so the runner, the backends' cache and the plugins share one definition."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def work_key(*parts: Any) -> str:
    """A short stable hash of the parts (JSON-encoded, so dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
