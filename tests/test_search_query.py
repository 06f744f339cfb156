"""The search query language, pure: parsing (abaco.api.search_query) and matching
(abaco.api.search_match), with properties checked by hypothesis.

These port the rules behind Abaco's test_search_datetime, test_search_in_nin,
test_search_eq_neq, test_search_like_nlike and test_search_skip_limit; the HTTP side of
those tests is in tests/api/test_search.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abaco.actors.models import Actor, Execution, converter
from abaco.actors.states import ExecutionStatus
from abaco.api.search_match import matches, text_of, text_score
from abaco.api.search_query import (
    DEFAULT_LIMIT,
    Kind,
    Op,
    kinds_of,
    parse_query,
    parse_time,
)
from abaco.errors import BadRequest

FIELDS = kinds_of(Execution, hidden=("tenant",))

moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
runtimes = st.integers(min_value=0, max_value=10_000)
statuses = st.sampled_from(["SUBMITTED", "RUNNING", "COMPLETE", "ERROR", "ABORTED"])


def _record(runtime: int = 0, status: str = "COMPLETE", received: datetime | None = None):
    execution = Execution(
        id="x" * 20,
        actor_id="a" * 20,
        status=ExecutionStatus(status),
        runtime=runtime,
        message_received_time=received or datetime(2024, 5, 1, tzinfo=UTC),
        final_state={"max_rss": runtime, "killed": False},
    )
    return converter.unstructure(execution)


def _one(key: str, value: str):
    return parse_query([(key, value)], FIELDS)


def test_field_kinds_come_from_the_record_classes():
    assert FIELDS["runtime"] is Kind.NUMBER
    assert FIELDS["status"] is Kind.TEXT
    assert FIELDS["start_time"] is Kind.TIME
    assert FIELDS["final_state"] is Kind.MAPPING
    assert "tenant" not in FIELDS
    actors = kinds_of(Actor)
    assert (actors["hints"], actors["stateless"], actors["type"]) == (
        Kind.LIST,
        Kind.BOOL,
        Kind.TEXT,
    )


def test_defaults_and_paging():
    """Ports the paging rules of test_search_skip_limit (limit 100 unless given)."""
    query = parse_query([], FIELDS)
    assert (query.skip, query.limit, query.conditions) == (0, DEFAULT_LIMIT, ())
    query = parse_query([("skip", "4"), ("limit", "23"), ("x-nonce", "ignored")], FIELDS)
    assert (query.skip, query.limit) == (4, 23)


@pytest.mark.parametrize(
    ("key", "value", "op", "path"),
    [
        ("status", "COMPLETE", Op.EQ, ("status",)),
        ("status.neq", "COMPLETE", Op.NEQ, ("status",)),
        ("runtime.between", "1,2", Op.BETWEEN, ("runtime",)),
        ("final_state.max_rss.gte", "5", Op.GTE, ("final_state", "max_rss")),
        ("final_state.killed", "false", Op.EQ, ("final_state", "killed")),
        ("executor.nlike", "^ali", Op.NLIKE, ("executor",)),
    ],
)
def test_keys_name_a_field_and_an_operator(key, value, op, path):
    (condition,) = _one(key, value).conditions
    assert (condition.op, condition.path) == (op, path)


def test_values_are_read_by_the_field_s_kind():
    assert _one("runtime", "5").conditions[0].value == 5.0
    assert _one("status", "5").conditions[0].value == "5"
    assert _one("exit_code", "none").conditions[0].value is None
    assert _one("final_state.killed", "true").conditions[0].value is True
    assert _one("status.in", "['A', 'B']").conditions[0].value == ("A", "B")
    assert _one("start_time.gt", "2020").conditions[0].value == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2000", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2000-05:00", datetime(2000, 1, 1, 5, tzinfo=UTC)),
        ("2000-01-01T01:00", datetime(2000, 1, 1, 1, tzinfo=UTC)),
        ("2020-05-01T", datetime(2020, 5, 1, tzinfo=UTC)),
        ("2020-05-01T14:45:41.591Z", datetime(2020, 5, 1, 14, 45, 41, 591000, tzinfo=UTC)),
        ("2020-05-01T14:45:41+0200", datetime(2020, 5, 1, 12, 45, 41, tzinfo=UTC)),
        ("2200-12-30T23:59:59.999Z", datetime(2200, 12, 30, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_times_of_any_precision(text, expected):
    """The forms test_search_datetime sends."""
    assert parse_time(text) == expected


@given(moments, st.integers(min_value=-23 * 60, max_value=23 * 60))
def test_a_time_in_any_zone_reads_back(moment, minutes):
    zone = timezone(timedelta(minutes=minutes))
    assert parse_time(moment.astimezone(zone).isoformat()) == moment
    assert parse_time(moment.isoformat().replace("+00:00", "Z")) == moment


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2020-13-01", "2020-02-30", "20-01-01", "2020-01-01T25"]
)
def test_bad_times_are_refused(text):
    with pytest.raises(BadRequest, match="Invalid datetime"):
        parse_time(text)


@given(
    st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=6),
)
def test_any_query_string_parses_or_is_a_bad_request(args):
    try:
        query = parse_query(args, FIELDS)
    except BadRequest as exc:
        message = str(exc)
        assert message, "a refusal says why"
        return
    for condition in query.conditions:
        assert condition.field in FIELDS
        matches(query, _record())  # evaluating a parsed query never fails either


@given(st.lists(runtimes, max_size=20), runtimes, runtimes)
def test_number_operators_agree_with_python(values, a, b):
    low, high = min(a, b), max(a, b)
    records = [_record(runtime=v) for v in values]
    cases = [
        (f"runtime.gt={a}", lambda v: v > a),
        (f"runtime.gte={a}", lambda v: v >= a),
        (f"runtime.lt={a}", lambda v: v < a),
        (f"runtime.lte={a}", lambda v: v <= a),
        (f"runtime={a}", lambda v: v == a),
        (f"runtime.neq={a}", lambda v: v != a),
        (f"runtime.between={low},{high}", lambda v: low <= v <= high),
        (f"runtime.in=[{a}, {b}]", lambda v: v in (a, b)),
        (f"runtime.nin=[{a}, {b}]", lambda v: v not in (a, b)),
        (f"final_state.max_rss.gt={a}", lambda v: v > a),
    ]
    for text, expected in cases:
        key, _, value = text.partition("=")
        query = _one(key, value)
        got = [matches(query, r) for r in records]
        assert got == [expected(v) for v in values], text


@given(st.lists(moments, max_size=10), moments, moments)
def test_time_operators_agree_with_datetime_order(received, a, b):
    low, high = min(a, b), max(a, b)
    records = [_record(received=m) for m in received]

    def z(moment):
        return moment.isoformat().replace("+00:00", "Z")

    for key, value, expected in [
        ("message_received_time.gt", z(a), lambda m: m > a),
        ("message_received_time.lt", z(a), lambda m: m < a),
        ("message_received_time.between", f"{z(low)},{z(high)}", lambda m: low <= m <= high),
    ]:
        query = _one(key, value)
        assert [matches(query, r) for r in records] == [expected(m) for m in received]


@given(statuses, st.lists(statuses, max_size=4), st.sampled_from(["eq", "in", "like"]))
def test_each_operator_and_its_negation_are_complements(status, others, op):
    """Ports the pairs of test_search_in_nin, test_search_eq_neq and test_search_like_nlike."""
    record = _record(status=status)
    value = {"eq": others[0] if others else "NONE", "in": repr(others), "like": "^CO"}[op]
    negation = {"eq": "neq", "in": "nin", "like": "nlike"}[op]
    positive = matches(_one(f"status.{op}", value), record)
    negative = matches(_one(f"status.{negation}", value), record)
    assert positive != negative


def test_missing_fields_follow_mongodb():
    record = _record()
    assert matches(_one("final_state.absent", "none"), record)
    assert matches(_one("final_state.absent.neq", "3"), record)
    assert not matches(_one("final_state.absent.gt", "3"), record)
    assert matches(_one("finish_time", "none"), record)
    assert not matches(_one("finish_time.gt", "2000"), record)


def test_list_fields_match_on_any_element():
    actors = kinds_of(Actor)
    record = converter.unstructure(
        Actor(id="a", name="n", owner="o", image="i", hints=["sync", "host:gpu"])
    )
    assert matches(parse_query([("hints", "sync")], actors), record)
    assert matches(parse_query([("hints.like", "^host:")], actors), record)
    assert not matches(parse_query([("hints", "other")], actors), record)
    assert matches(parse_query([("hints", '["sync", "host:gpu"]')], actors), record)


def test_full_text_words_and_phrases():
    """Ports test_search_exactsearch_search: phrases must occur, words rank."""
    text = text_of({"image": "abacosamples/sleep_loop", "name": "Sleeper", "n": 3})
    query = parse_query([("exactsearch", "abacosamples/sleep_loop")], {})
    assert text_score(query, text) == 0
    assert text_score(parse_query([("exactsearch", "NOTATHINGWORD")], {}), text) is None
    assert text_score(parse_query([("search", "sleeper nothing loop")], {}), text) == 2
    assert text_score(parse_query([("search", "nothing")], {}), text) is None


@given(st.text(min_size=1, max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_a_phrase_inside_a_value_is_found(phrase, before, after):
    text = text_of({"description": before + phrase + after})
    query = parse_query([("exactsearch", phrase)], {})
    if query.phrases:
        assert text_score(query, text) == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([("colour", "red")], "no field 'colour'"),
        ([("runtime.gt", "fast")], "is not a number"),
        ([("runtime.gt", "nan")], "finite"),
        ([("status.like", "(")], "is not a regular expression"),
        ([("status.like", "x" * 600)], "longer than"),
        ([("status.in", "{}")], "takes a JSON list"),
        ([("final_state.gt", "1")], "needs an ordered field"),
        ([("skip", "1"), ("skip", "2")], "given 2 times"),
        ([("limit", "1001")], "at most 1000"),
    ],
)
def test_bad_queries_say_what_is_wrong(args, says):
    with pytest.raises(BadRequest, match=says):
        parse_query(args, FIELDS)
