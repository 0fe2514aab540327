"""The status page's activity chart: pushes to Zoho and deliveries from Zoho per hour over the last
24 hours, failures and dead jobs marked, drawn as server-side SVG geometry (`chart` is pure)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..inbound import reports
from ..zoho import gate

HOURS = 24
SLOT = 15          # SVG units per hour: two bars of BAR with gaps
BAR = 5
PLOT_TOP = 12      # room above the tallest bar for the dead-job marks
PLOT_HEIGHT = 60
WIDTH = HOURS * SLOT
HEIGHT = PLOT_TOP + PLOT_HEIGHT + 2
LABEL_EVERY = 6    # hours between two labels (HTML below the SVG, so text keeps its size on any screen)


@dataclass(frozen=True)
class Hour:
    start: float   # epoch seconds
    pushed: int
    failed: int    # attempts that failed and will be tried again
    dead: int      # pushes given up
    applied: int
    skipped: int   # duplicate or stale: nothing to do
    waiting: int
    refused: int

    @property
    def delivered(self) -> int:
        return self.applied + self.skipped + self.waiting + self.refused

    def describe(self) -> str:
        clock = time.strftime("%H:%M", time.gmtime(self.start))
        until = time.strftime("%H:%M", time.gmtime(self.start + 3600))
        return (f"{clock}–{until} UTC: {self.pushed} pushed, {self.failed} failed, {self.dead} dead; "
                f"{self.delivered} deliveries from Zoho: {self.applied} applied, {self.skipped} duplicate or stale, "
                f"{self.waiting} waiting, {self.refused} refused")


def last_day(rt, now: float | None = None) -> dict:
    """The chart of the last 24 hours (see `chart`), read from the push meter and the inbox."""
    now = time.time() if now is None else now
    pushes = gate.hourly(rt.store, ("pushes", "push_failed", "push_dead"), HOURS, now)
    deliveries = reports.hourly(rt, HOURS, now)
    first = (int(now // 3600) - HOURS + 1) * 3600
    hours = [Hour(first + i * 3600, pushes["pushes"][i], pushes["push_failed"][i], pushes["push_dead"][i],
                  *(deliveries[group][i] for group in reports.GROUPS)) for i in range(HOURS)]
    return chart(hours)


def _stack(x: float, parts, scale: float) -> list[dict]:
    """One bar's segments from the bottom up, each at least 2 units tall when it counts anything."""
    segments, bottom = [], PLOT_TOP + PLOT_HEIGHT
    for kind, value in parts:
        if value <= 0:
            continue
        height = max(2.0, value * scale)
        bottom -= height
        segments.append({"kind": kind, "x": x, "y": round(bottom, 2), "width": BAR, "height": round(height, 2)})
    return segments


def chart(hours: list[Hour]) -> dict:
    """SVG geometry and totals for these hours (pure): `hours` (each with its bars, dead mark, title), `labels`
    (every LABEL_EVERY hours), `totals`, `peak` (what the full bar height stands for), the view box, `rows`."""
    peak = max([1] + [h.pushed + h.failed + h.dead for h in hours] + [h.delivered for h in hours])
    scale = PLOT_HEIGHT / peak
    drawn = []
    for index, hour in enumerate(hours):
        x = index * SLOT
        push = _stack(x + 1.5, (("push", hour.pushed), ("failed", hour.failed), ("dead", hour.dead)), scale)
        delivery = _stack(x + 1.5 + BAR + 1, (("delivery", hour.applied + hour.skipped), ("waiting", hour.waiting),
                                              ("failed", hour.refused)), scale)
        top = min([s["y"] for s in push] or [PLOT_TOP + PLOT_HEIGHT])
        drawn.append({
            "x": x, "title": hour.describe(), "bars": push + delivery,
            "dead_mark": {"x": x + 1.5, "y": max(0.0, top - 7), "width": BAR, "height": 4} if hour.dead else None,
        })
    labels = [time.strftime("%H:%M", time.gmtime(hour.start)) for index, hour in enumerate(hours) if index % LABEL_EVERY == 0]
    totals = {name: sum(getattr(h, name) for h in hours)
              for name in ("pushed", "failed", "dead", "applied", "skipped", "waiting", "refused", "delivered")}
    return {"hours": drawn, "labels": labels, "totals": totals, "peak": peak, "width": WIDTH, "height": HEIGHT, "slot": SLOT,
            "baseline": PLOT_TOP + PLOT_HEIGHT,
            "rows": [h for h in hours if h.pushed or h.failed or h.dead or h.delivered]}
