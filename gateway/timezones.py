"""Wall-clock times without an offset (OnPrintShop's, Zoho's merge fields) read in a time zone."""
from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError


def zone(name: str, setting: str) -> ZoneInfo:
    """The IANA time zone `name`; ConfigError naming `setting` when there is none such."""
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{setting}={name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)") from None


def read_wall_clock(naive: dt.datetime, tz, not_after: float) -> dt.datetime:
    """A naive wall-clock time in `tz` as an aware datetime: in a repeated hour the later reading
    unless it is after `not_after` (epoch seconds); in a skipped hour, the offset from before
    (docs/operations.md, "Clock changes")."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    # fold=1 is the later instant only in a repeated hour; in a skipped one it is the earlier.
    return second if first.timestamp() < second.timestamp() <= not_after else first


clock = time.time  # now, for reading a store's own times; tests set it


class LocalClock:
    """Converts between aware datetimes and a store's naive ones (its time zone, whole seconds)."""

    def __init__(self, tz: ZoneInfo):
        self.timezone = tz

    def to_local(self, aware: dt.datetime) -> dt.datetime:
        """An aware datetime → the naive store datetime, to the second."""
        if aware.tzinfo is None:
            raise ValueError("to_local needs an aware datetime")
        return aware.astimezone(self.timezone).replace(tzinfo=None, microsecond=0)

    def from_local(self, naive: dt.datetime, now: float | None = None) -> dt.datetime:
        """A naive store datetime → aware UTC; in a repeated hour the later reading not after `now`,
        so a store edit in the second pass is never taken for an hour older (last writer wins)."""
        if naive.tzinfo is not None:
            return naive.astimezone(dt.timezone.utc)
        return read_wall_clock(naive, self.timezone, clock() if now is None else now).astimezone(dt.timezone.utc)

    def local_from_epoch(self, epoch: float) -> dt.datetime:
        return self.to_local(dt.datetime.fromtimestamp(epoch, dt.timezone.utc))

    def epoch_from_local(self, naive: dt.datetime, now: float | None = None) -> float:
        return self.from_local(naive, now).timestamp()

    def now_local(self) -> dt.datetime:
        return self.to_local(dt.datetime.fromtimestamp(clock(), dt.timezone.utc))

    def set_back_within(self, seconds: float) -> dt.timedelta:
        """How far the wall clock was set back (clocks going back) in the last `seconds`: zero mostly."""
        now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc)
        before = now - dt.timedelta(seconds=seconds)
        change = before.astimezone(self.timezone).utcoffset() - now.astimezone(self.timezone).utcoffset()
        return max(change, dt.timedelta(0))
