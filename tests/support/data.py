"""Where the real-tool payloads the tests read live: tests/data, copied from the project's shared set
(tests/data/README.md gives each file's provenance). Inside the repository, so a fresh clone runs them."""

from __future__ import annotations

from pathlib import Path

PAYLOADS = Path(__file__).resolve().parents[1] / "data"
