"""OnPrintShop's naive times in the hour repeated when clocks go back (OPS_TIMEZONE with summer time)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gateway.ops.database import OpsDatabase
from gateway.timezones import read_wall_clock

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")  # 1 November 2026: 02:00 EDT → 01:00 EST


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("naive, now, expected", [
    # 01:30 happens at 05:30 and 06:30 UTC: the later reading once it has happened, else the earlier
    ("2026-11-01 01:30:00", "2026-11-01 06:40:00", "2026-11-01 06:30:00"),
    ("2026-11-01 01:30:00", "2026-11-01 06:29:59", "2026-11-01 05:30:00"),
    ("2026-11-01 01:30:00", "2026-11-01 05:35:00", "2026-11-01 05:30:00"),
    ("2026-11-01 01:30:00", "2026-11-27 12:00:00", "2026-11-01 06:30:00"),
    # not ambiguous: one reading, whatever the clock says
    ("2026-11-01 00:59:59", "2026-11-27 12:00:00", "2026-11-01 04:59:59"),
    ("2026-11-01 02:00:00", "2026-11-27 12:00:00", "2026-11-01 07:00:00"),
    # the hour skipped in spring (8 March, 02:00 EST → 03:00 EDT): read as before, 02:30 EST
    ("2026-03-08 02:30:00", "2026-11-27 12:00:00", "2026-03-08 07:30:00"),
])
def test_an_ambiguous_onprintshop_time_is_the_latest_reading_not_after_now(tmp_path, naive, now, expected):
    ops = OpsDatabase(f"sqlite:///{tmp_path}/ops.db", timezone="America/New_York")
    try:
        got = ops.from_local(dt.datetime.fromisoformat(naive), now=utc(now).timestamp())
        assert got == utc(expected) and got.tzinfo is UTC
        assert ops.epoch_from_local(dt.datetime.fromisoformat(naive), now=utc(now).timestamp()) == utc(expected).timestamp()
    finally:
        ops.dispose()


def test_read_wall_clock_picks_the_fold():
    naive = dt.datetime(2026, 11, 1, 1, 30)
    assert read_wall_clock(naive, NY, utc("2026-11-01 07:00:00").timestamp()).fold == 1
    assert read_wall_clock(naive, NY, utc("2026-11-01 06:00:00").timestamp()).fold == 0
    assert read_wall_clock(naive, UTC, utc("2030-01-01 00:00:00").timestamp()) == naive.replace(tzinfo=UTC)
