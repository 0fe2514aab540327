"""The queue's pause for the whole deployment (setting `outbound.pause`): it burns no attempts, and
a new one never shortens the one in force (docs/outbound.md, "Pauses")."""
from __future__ import annotations

import json
import time

import sqlalchemy as sa

from ..state import dialect
from ..state.engine import lost_race, rerun
from ..state.tables import settings_table
from .retry import THROTTLE_POLICY, RetryPolicy

PAUSE_SETTING = "outbound.pause"


# Pauses that end when the admin connects Zoho again (worker.paused_now), never by the clock.
UNTIL_CONNECTED = ("reauthorization", "not_configured")


def pause(store, kind: str, reason: str, until: float | None = None, streak: int = 0) -> dict:
    """Pause the whole queue (a kind of docs/outbound.md, "Pauses") until `until`, or with None until
    the admin acts; returns the pause in force after. Only a later end replaces a timed pause, and
    nothing timed replaces one without an end."""
    def decide(current, now):
        if _in_force(current, now) and until is not None:
            if current.get("until") is None or current["until"] >= until:
                return current
        return {"kind": kind, "reason": reason, "until": until, "since": now, "streak": streak}

    return _change_pause(store, decide)


def pause_throttled(store, retry_after: float | None, policy: RetryPolicy = THROTTLE_POLICY) -> dict:
    """Zoho answered 429: pause until Retry-After, or for a backoff growing with each 429 pause in a
    row (`streak`, until a send goes through); while one is in force, another 429 can only move
    its end later and does not count again."""
    def decide(current, now):
        in_force = _in_force(current, now)
        if in_force and current.get("kind") == "throttled":
            if retry_after is None or now + retry_after <= current["until"]:
                return current
            streak, until = int(current.get("streak") or 0), now + retry_after
        else:
            streak = (int(current.get("streak") or 0) if current and current.get("kind") == "throttled" else 0) + 1
            until = now + (retry_after if retry_after is not None else policy.next_delay(streak) + 1.0)
            if in_force and (current.get("until") is None or current["until"] >= until):
                return current  # a longer pause for another reason is in force
        return {"kind": "throttled", "until": until, "since": now, "streak": streak,
                "reason": f"Zoho asked us to slow down (HTTP 429); sending resumes at {clock_time(until)} UTC"}

    return _change_pause(store, decide)


def resume(store, kinds=None) -> bool:
    """End the pause (only one of these kinds, when given); True when one was ended."""
    def decide(current, now):
        if current is None or (kinds is not None and current.get("kind") not in kinds):
            return current
        return None

    return _change_pause(store, decide, ended=True)


def end_throttle_streak(store) -> bool:
    """A send went through: forget the 429 streak, unless a new pause is in force by now."""
    def decide(current, now):
        if current and current.get("kind") == "throttled" and not _in_force(current, now):
            return None
        return current

    return _change_pause(store, decide, ended=True)


def current_pause(store, now: float | None = None) -> dict | None:
    """The pause in force, or None (a pause whose time has passed is over)."""
    state = store.get_setting(PAUSE_SETTING)
    return state if _in_force(state, now or time.time()) else None


def throttle_streak(store) -> int:
    """How many 429 pauses in a row (kept after the pause ends, cleared by a successful send)."""
    state = store.get_setting(PAUSE_SETTING)
    return int(state.get("streak", 0)) if state and state.get("kind") == "throttled" else 0


def clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def _in_force(state: dict | None, now: float) -> bool:
    return bool(state) and (state.get("until") is None or state["until"] > now)


def _change_pause(store, decide, ended: bool = False):
    """Read the pause, `decide(current, now)` the new one and write it, in one transaction with the
    row locked, so two senders' decisions never overwrite each other. Returns the pause decided
    (with `ended`: whether the pause was ended)."""
    query = sa.select(settings_table.c.value).where(settings_table.c.name == PAUSE_SETTING)
    query = dialect.locked(query, store.dialect)

    def work(conn):
        row = conn.execute(query).first()
        if row is None:
            # Make the row ours before deciding: a concurrent first insert makes this fail (and
            # we decide again, on its pause), where an UPDATE would later overwrite it unread.
            conn.execute(settings_table.insert().values(name=PAUSE_SETTING, value="null", updated_at=time.time()))
        current = json.loads(row[0]) if row else None
        decided = decide(current, time.time())
        if decided is not current or row is None:
            store.set_setting(PAUSE_SETTING, decided, conn=conn)
        return (current is not None and decided is None) if ended else decided

    # Two first pauses may insert the setting's row at once: it exists then, so decide again.
    return rerun(lambda: store.transaction(work), attempts=3, when=lost_race)
