"""Cron schedules of actors: parsing, validation and next-run arithmetic (pure, no I/O).

An actor's ``cron_schedule`` is written in one of two syntaxes, always in UTC:

- **Abaco's** ``"START + N UNIT"``: START is ``YYYY-MM-DD HH`` or ``now``, N a whole
  number of at least 1, and UNIT one of Abaco's ``hour``, ``day``, ``week``, ``month``
  (singular or plural). We also accept ``minute`` units, and ``second`` units where
  ``[cron] allow_seconds`` says so (for tests); START may then carry minutes and seconds
  (``YYYY-MM-DD HH:MM[:SS]``). Runs fall on START, START + N UNIT, START + 2N UNIT, ...;
  months are added as Abaco adds them (the day is cut to the month's last day and stays
  cut).
- **crontab**: a standard five-field expression (minute hour day-of-month month
  day-of-week), e.g. ``*/5 * * * *``, evaluated by croniter.

``cron_next_ex``, the next run, is shown in Abaco's form ``YYYY-M-D H`` (no zero padding,
as Abaco writes it) for hour-grained schedules; schedules finer than the hour (minute
units, crontab, a START with minutes) add ``:MM``, and second units ``:MM:SS``.

Abaco's error messages are kept: "The cron is not in the correct format", "The starting
date ... is not in the correct format", "The starting datetime is old. The current UTC
time is ...", "... is an invalid unit of time". All raise :class:`~abaco.errors.BadRequest`.
"""

from __future__ import annotations

import calendar
import enum
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from croniter import croniter
from croniter.croniter import CroniterError

from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CRON_MESSAGE",
    "Crontab",
    "Interval",
    "Resolution",
    "Schedule",
    "Unit",
    "cron_fields",
    "format_time",
    "parse_schedule",
    "parse_time",
    "truncate",
]

#: The message a cron run sends, as Abaco's cron sends it.
CRON_MESSAGE = "This is your cron execution"

_NOT_FORMATTED = "The cron is not in the correct format"


class Resolution(enum.IntEnum):
    """How finely a schedule's times are given: the hour (Abaco's), the minute, the second."""

    SECOND = 1
    MINUTE = 60
    HOUR = 3600


class Unit(enum.Enum):
    """The units of Abaco's ``START + N UNIT`` (minute and second are ours)."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def resolution(self) -> Resolution:
        """The finest resolution a schedule in this unit needs."""
        if self is Unit.SECOND:
            return Resolution.SECOND
        return Resolution.MINUTE if self is Unit.MINUTE else Resolution.HOUR


_FIXED = {
    Unit.SECOND: timedelta(seconds=1),
    Unit.MINUTE: timedelta(minutes=1),
    Unit.HOUR: timedelta(hours=1),
    Unit.DAY: timedelta(days=1),
    Unit.WEEK: timedelta(weeks=1),
}

# Abaco splits on " + " and the last space: "{} + {} {}".
_ABACO = re.compile(r"\s*(?P<start>.+?)\s+\+\s+(?P<count>\S+)\s+(?P<unit>\S+)\s*")
# "YYYY-M-D H", optionally ":MM" and ":SS" (Abaco reads "{}-{}-{} {}" and int()s each).
_TIME = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2}) (?P<h>\d{1,2})"
    r"(?::(?P<mi>\d{1,2})(?::(?P<s>\d{1,2}))?)?"
)


def truncate(moment: datetime, resolution: Resolution) -> datetime:
    """``moment`` with everything finer than ``resolution`` set to zero."""
    moment = moment.replace(microsecond=0)
    if resolution >= Resolution.MINUTE:
        moment = moment.replace(second=0)
    if resolution >= Resolution.HOUR:
        moment = moment.replace(minute=0)
    return moment


def format_time(moment: datetime, resolution: Resolution) -> str:
    """``moment`` (UTC) in Abaco's ``YYYY-M-D H`` form, with ``:MM[:SS]`` when finer."""
    text = f"{moment.year}-{moment.month}-{moment.day} {moment.hour}"
    if resolution <= Resolution.MINUTE:
        text += f":{moment.minute:02d}"
    if resolution <= Resolution.SECOND:
        text += f":{moment.second:02d}"
    return text


def _time_of(text: str) -> tuple[datetime, Resolution] | None:
    found = _TIME.fullmatch(text)
    if found is None:
        return None
    parts = found.groupdict()
    try:
        moment = datetime(
            int(parts["y"]),
            int(parts["mo"]),
            int(parts["d"]),
            int(parts["h"]),
            int(parts["mi"] or 0),
            int(parts["s"] or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if parts["s"] is not None:
        return moment, Resolution.SECOND
    return moment, Resolution.MINUTE if parts["mi"] is not None else Resolution.HOUR


def parse_time(text: str) -> datetime:
    """A time in :func:`format_time`'s form (UTC); :class:`BadRequest` when it is not one."""
    found = _time_of(text)
    if found is None:
        raise BadRequest(f"{text!r} is not a time of the form YYYY-MM-DD HH[:MM[:SS]].")
    return found[0]


@attrs.frozen
class Interval:
    """Abaco's ``START + N UNIT``: every ``count`` ``unit`` from ``start`` (None: now)."""

    start: datetime | None
    count: int
    unit: Unit
    #: How finely its times are shown: the unit's, or the START's when that is finer.
    resolution: Resolution

    def first(self, now: datetime) -> datetime:
        """The first run of a schedule set at ``now``: START, or now (truncated) for ``now``.

        :class:`BadRequest` with Abaco's message when START has passed.
        """
        current = truncate(now, self.resolution)
        if self.start is None:
            return current
        if self.start < current:
            shown = current.replace(tzinfo=None)
            raise BadRequest(f"The starting datetime is old. The current UTC time is {shown}")
        return self.start

    def after(self, due: datetime, now: datetime) -> datetime | None:
        """The first run later than ``now`` counted from the run ``due`` (None: past year 9999)."""
        try:
            if self.unit is Unit.MONTH:
                moment = _add_months(due, self.count)
                while moment <= now:
                    moment = _add_months(moment, self.count)
                return moment
            step = _FIXED[self.unit] * self.count
            steps = max(1, (now - due) // step + 1)
            return due + step * steps
        except (OverflowError, ValueError):
            return None


@attrs.frozen
class Crontab:
    """A five-field crontab expression (UTC), evaluated by croniter."""

    expression: str
    resolution: Resolution = Resolution.MINUTE

    def first(self, now: datetime) -> datetime:
        """The first run after ``now``; :class:`BadRequest` when the expression never runs."""
        found = self.after(now, now)
        if found is None:
            raise BadRequest(f"{_NOT_FORMATTED}: {self.expression!r} never runs.")
        return found

    def after(self, due: datetime, now: datetime) -> datetime | None:
        """The first run later than ``now`` (``due`` plays no part); None when there is none."""
        try:
            found: datetime = croniter(self.expression, max(due, now)).get_next(datetime)
        except (CroniterError, OverflowError, ValueError):
            return None
        return found


Schedule = Interval | Crontab


def _add_months(moment: datetime, months: int) -> datetime:
    years, month0 = divmod(moment.month - 1 + months, 12)
    year = moment.year + years
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return moment.replace(year=year, month=month0 + 1, day=day)  # ValueError past year 9999


def _unit_of(name: str, *, allow_seconds: bool) -> Unit:
    singular = name.lower().removesuffix("s")
    try:
        unit = Unit(singular)
    except ValueError:
        unit = None
    if unit is None or (unit is Unit.SECOND and not allow_seconds):
        raise BadRequest(f"{name} is an invalid unit of time")
    return unit


def _interval(found: re.Match[str], *, allow_seconds: bool) -> Interval:
    start_text, count_text, unit_text = found["start"], found["count"], found["unit"]
    start: datetime | None = None
    resolution = Resolution.HOUR
    if start_text.lower() != "now":
        parsed = _time_of(start_text)
        if parsed is None:
            raise BadRequest(f"The starting date {start_text} is not in the correct format")
        start, resolution = parsed
    if not count_text.isdigit() or int(count_text) < 1:
        raise BadRequest(f"{_NOT_FORMATTED}: the number of units must be 1 or more.")
    unit = _unit_of(unit_text, allow_seconds=allow_seconds)
    return Interval(start, int(count_text), unit, min(resolution, unit.resolution))


def parse_schedule(text: str, *, allow_seconds: bool = False) -> Schedule:
    """The schedule ``text`` says, in either syntax; :class:`BadRequest` with Abaco's messages."""
    found = _ABACO.fullmatch(text)
    if found is not None:
        return _interval(found, allow_seconds=allow_seconds)
    fields = text.split()
    expression = " ".join(fields)
    if len(fields) == 5 and croniter.is_valid(expression):
        return Crontab(expression)
    raise BadRequest(
        f"{_NOT_FORMATTED}: use 'YYYY-MM-DD HH + N unit' (or 'now + N unit') or a "
        "five-field crontab expression."
    )


def cron_fields(
    given: Mapping[str, Any], *, current: str | None, now: datetime, allow_seconds: bool
) -> dict[str, Any]:
    """The cron fields to store with an actor when a client sends ``given``.

    A ``cron_schedule`` other than the ``current`` one is checked and sets
    ``cron_next_ex`` to its first run, and turns cron on unless ``given`` says
    ``cron_on`` itself. The current schedule sent again changes nothing, so that a client
    may send back the actor it read even after the schedule's start has passed.
    """
    text = given.get("cron_schedule")
    if text is None or text == current:
        return {}
    schedule = parse_schedule(text, allow_seconds=allow_seconds)
    changes: dict[str, Any] = {
        "cron_next_ex": format_time(schedule.first(now), schedule.resolution)
    }
    if given.get("cron_on") is None:
        changes["cron_on"] = True
    return changes
