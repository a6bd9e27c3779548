"""Where the shared real-tool payloads live: ../shared/data beside the repository (as in CI), or
$NETWARDEN_SHARED_DATA. Missing data is an error, not a skip: those tests are the point."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("NETWARDEN_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")

if not SHARED_DATA.is_dir():
    raise RuntimeError(f"shared payloads not found at {SHARED_DATA}: set NETWARDEN_SHARED_DATA")
