"""Cron schedules (abaco.cron): both syntaxes, Abaco's messages, and next-run arithmetic."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import given
from hypothesis import strategies as st

from abaco.cron import (
    Crontab,
    Interval,
    Resolution,
    Unit,
    cron_fields,
    format_time,
    parse_schedule,
    parse_time,
    truncate,
)
from abaco.errors import BadRequest

NOW = datetime(2024, 3, 5, 7, 42, 13, 500, tzinfo=UTC)

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
resolutions = st.sampled_from(list(Resolution))
fixed_units = st.sampled_from([Unit.SECOND, Unit.MINUTE, Unit.HOUR, Unit.DAY, Unit.WEEK])


# -- times ---------------------------------------------------------------------------------


@given(moments, resolutions)
def test_a_time_reads_back_as_written_at_its_resolution(moment, resolution):
    exact = truncate(moment, resolution)
    assert parse_time(format_time(exact, resolution)) == exact


def test_times_are_written_as_abaco_writes_them_without_padding():
    assert format_time(datetime(2078, 9, 6, 20, tzinfo=UTC), Resolution.HOUR) == "2078-9-6 20"
    assert format_time(NOW, Resolution.MINUTE) == "2024-3-5 7:42"
    assert format_time(NOW, Resolution.SECOND) == "2024-3-5 7:42:13"


@pytest.mark.parametrize("text", ["2024-3-5", "2024-13-1 1", "2024-2-30 1", "24-3-5 7", "x"])
def test_a_malformed_time_is_refused(text):
    with pytest.raises(BadRequest):
        parse_time(text)


# -- Abaco's syntax --------------------------------------------------------------------------


def test_abacos_syntax_with_a_start_and_each_of_its_units():
    """Ports test_register_actor_with_cron's schedule ('<tomorrow> 23 + 6 hours')."""
    for name, unit in [("hours", Unit.HOUR), ("day", Unit.DAY), ("weeks", Unit.WEEK)]:
        schedule = parse_schedule(f"2024-03-06 23 + 6 {name}")
        assert schedule == Interval(datetime(2024, 3, 6, 23, tzinfo=UTC), 6, unit, Resolution.HOUR)
    assert parse_schedule("2078-09-6 20 + 3 months").first(NOW) == datetime(
        2078, 9, 6, 20, tzinfo=UTC
    )


def test_now_starts_at_the_current_hour_as_in_abaco():
    schedule = parse_schedule("now + 1 hour")
    assert schedule.first(NOW) == datetime(2024, 3, 5, 7, tzinfo=UTC)
    assert format_time(schedule.first(NOW), schedule.resolution) == "2024-3-5 7"
    assert parse_schedule("Now + 1 hour") == schedule


def test_minute_and_second_units_are_ours_and_finer():
    minutes = parse_schedule("now + 5 minutes")
    assert minutes.resolution is Resolution.MINUTE
    assert minutes.first(NOW) == datetime(2024, 3, 5, 7, 42, tzinfo=UTC)
    with pytest.raises(BadRequest, match=r"^seconds is an invalid unit of time$"):
        parse_schedule("now + 2 seconds")
    seconds = parse_schedule("now + 2 seconds", allow_seconds=True)
    assert seconds.first(NOW) == datetime(2024, 3, 5, 7, 42, 13, tzinfo=UTC)


def test_a_start_with_minutes_makes_the_schedule_minute_grained():
    schedule = parse_schedule("2024-03-06 23:30 + 1 day")
    assert schedule.resolution is Resolution.MINUTE
    assert format_time(schedule.first(NOW), schedule.resolution) == "2024-3-6 23:30"


def test_an_unknown_unit_is_refused_with_abacos_message():
    """Ports test_register_actor_with_incorrect_cron ('... + 6 flimflams')."""
    with pytest.raises(BadRequest, match=r"^flimflams is an invalid unit of time$"):
        parse_schedule("2020-06-21 14 + 6 flimflams")


def test_a_start_in_the_past_is_refused_with_abacos_message():
    schedule = parse_schedule("2024-03-05 06 + 1 hour")
    with pytest.raises(
        BadRequest,
        match=r"^The starting datetime is old\. The current UTC time is 2024-03-05 07:00:00$",
    ):
        schedule.first(NOW)
    # The current hour itself is not old, as in Abaco.
    assert parse_schedule("2024-03-05 07 + 1 hour").first(NOW) == truncate(NOW, Resolution.HOUR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-03-05 + 1 hour", "The starting date 2024-03-05 is not in the correct format"),
        ("2024-02-30 10 + 1 hour", "The starting date 2024-02-30 10 is not in the correct format"),
        ("tomorrow + 1 hour", "The starting date tomorrow is not in the correct format"),
        ("now + 0 hours", "The cron is not in the correct format"),
        ("now + -1 hours", "The cron is not in the correct format"),
        ("now + one hour", "The cron is not in the correct format"),
        ("now 1 hour", "The cron is not in the correct format"),
        ("", "The cron is not in the correct format"),
    ],
)
def test_malformed_schedules_are_refused_with_abacos_messages(text, message):
    with pytest.raises(BadRequest, match=f"^{message}"):
        parse_schedule(text)


@given(moments, fixed_units, st.integers(1, 1000))
def test_the_next_fixed_interval_run_is_the_first_on_the_schedule_after_now(due, unit, count):
    schedule = Interval(None, count, unit, unit.resolution)
    step = {
        Unit.SECOND: timedelta(seconds=1),
        Unit.MINUTE: timedelta(minutes=1),
        Unit.HOUR: timedelta(hours=1),
        Unit.DAY: timedelta(days=1),
        Unit.WEEK: timedelta(weeks=1),
    }[unit] * count
    for now in (due, due + step / 3, due + step, due + step * 7 + step / 2):
        following = schedule.after(due, now)
        assert following is not None
        assert following > now
        assert following - step <= now
        assert (following - due) % step == timedelta(0)


@given(moments, st.integers(1, 30), st.integers(0, 5000))
def test_months_are_added_as_abaco_adds_them(due, count, days_late):
    schedule = Interval(None, count, Unit.MONTH, Resolution.HOUR)
    now = due + timedelta(days=days_late)
    following = schedule.after(due, now)
    assert following is not None
    assert following > now
    # Month by month from the due run, each landing on the same day or the month's last.
    moment = due
    while moment <= now:
        year, month0 = divmod(moment.month - 1 + count, 12)
        last = calendar.monthrange(moment.year + year, month0 + 1)[1]
        moment = moment.replace(
            year=moment.year + year, month=month0 + 1, day=min(moment.day, last)
        )
    assert following == moment


def test_a_run_past_the_year_9999_is_none():
    due = datetime(9999, 12, 1, tzinfo=UTC)
    assert Interval(None, 1, Unit.MONTH, Resolution.HOUR).after(due, due) is None
    assert Interval(None, 10**6, Unit.WEEK, Resolution.HOUR).after(due, due) is None


# -- crontab ---------------------------------------------------------------------------------


def test_crontab_expressions_run_at_their_next_match_after_now():
    schedule = parse_schedule("*/5 * * * *")
    assert schedule == Crontab("*/5 * * * *")
    assert schedule.first(NOW) == datetime(2024, 3, 5, 7, 45, tzinfo=UTC)
    assert format_time(schedule.first(NOW), schedule.resolution) == "2024-3-5 7:45"
    assert parse_schedule("  0  12 * *   MON-FRI ") == Crontab("0 12 * * MON-FRI")


@pytest.mark.parametrize(
    "text", ["* * * *", "* * * * * *", "61 * * * *", "* * * * 8", "a b c d e", "@hourly"]
)
def test_what_is_not_a_five_field_crontab_is_refused(text):
    with pytest.raises(BadRequest, match=r"^The cron is not in the correct format"):
        parse_schedule(text)


def test_a_crontab_that_never_runs_is_refused():
    with pytest.raises(BadRequest, match="never runs"):
        parse_schedule("0 0 31 2 *").first(NOW)


crontabs = st.sampled_from(
    ["* * * * *", "*/7 * * * *", "0 * * * *", "15 3 * * *", "0 0 1 * *", "30 12 * * 1-5"]
)


@given(crontabs, moments)
def test_a_crontab_next_run_matches_and_is_the_first_after_now(expression, now):
    schedule = parse_schedule(expression)
    following = schedule.after(now, now)
    assert following is not None
    assert following > now
    assert croniter.match(expression, following)
    # Nothing matched in between: the previous match is at or before now.
    previous = croniter(expression, following).get_prev(datetime)
    assert previous <= now


# -- what the API stores ---------------------------------------------------------------------


def test_a_new_schedule_sets_the_next_run_and_turns_cron_on():
    fields = cron_fields(
        {"cron_schedule": "2078-09-6 20 + 3 months"}, current=None, now=NOW, allow_seconds=False
    )
    assert fields == {"cron_next_ex": "2078-9-6 20", "cron_on": True}


def test_a_schedule_sent_with_cron_on_leaves_cron_on_to_the_client():
    """Ports test_update_cron_switch: a schedule and cron_on false together."""
    given_fields = {"cron_schedule": "2078-09-6 20 + 3 months", "cron_on": False}
    fields = cron_fields(given_fields, current=None, now=NOW, allow_seconds=False)
    assert fields == {"cron_next_ex": "2078-9-6 20"}


def test_the_current_schedule_sent_again_changes_nothing_even_once_its_start_passed():
    old = "2024-03-01 10 + 1 day"
    assert cron_fields({"cron_schedule": old}, current=old, now=NOW, allow_seconds=False) == {}
    with pytest.raises(BadRequest, match="old"):
        cron_fields({"cron_schedule": old}, current="now + 1 hour", now=NOW, allow_seconds=False)


def test_no_schedule_no_cron_fields():
    assert cron_fields({"cron_on": True}, current=None, now=NOW, allow_seconds=False) == {}


cron_like = st.lists(
    st.sampled_from(["*", "*/3", "0", "59", "1-5", "L", "#", "?", "MON", "JAN", "7", "99", ","]),
    min_size=5,
    max_size=5,
).map(" ".join)


@given(st.one_of(st.text(), cron_like, st.text().map(lambda t: f"now + {t}")))
def test_any_text_is_a_schedule_or_a_bad_request(text):
    try:
        schedule = parse_schedule(text, allow_seconds=True)
        first = schedule.first(NOW)
    except BadRequest:
        return
    assert first >= truncate(NOW, schedule.resolution)
    following = schedule.after(first, first)
    assert following is None or following > first
