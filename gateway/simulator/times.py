"""Zoho's date-times: ISO 8601 to the second, with the offset (`2026-11-27T08:30:00+00:00`)."""
from __future__ import annotations

from datetime import datetime, timezone


def zoho_time(epoch: float) -> str:
    """Zoho's own rendering of a moment (UTC here)."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat()


def parse_time(value: str) -> float | None:
    """Epoch seconds of a date-time with an offset; None for anything else."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()
