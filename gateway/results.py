"""`Result`: what an operation a person asked for did, in words they can act on."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """`ok`, the `message` shown as is, and a `detail` for the audit log (never a secret)."""

    ok: bool
    message: str
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok
