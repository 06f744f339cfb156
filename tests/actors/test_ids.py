"""Ids: form, uniqueness across threads and forks, order by creation time."""

import os
import threading
import types
from datetime import UTC, datetime, timedelta

import pytest

from abaco.actors import ids
from abaco.actors.ids import ID_LENGTH, id_datetime, is_valid_id, new_id

CROCKFORD_LOWER = set("0123456789abcdefghjkmnpqrstvwxyz")


@pytest.fixture
def frozen_clock(monkeypatch):
    """Stop the ids module's clock at one millisecond; returns a setter to move it."""
    now = {"ns": 1_700_000_000_000 * 1_000_000}
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: now["ns"]))
    monkeypatch.setattr(ids, "_generator", ids._Generator())

    def set_ms(ms: int) -> None:
        now["ns"] = ms * 1_000_000

    return set_ms


def test_form():
    made = new_id()
    assert len(made) == ID_LENGTH == 16
    assert set(made) <= CROCKFORD_LOWER
    assert is_valid_id(made)


@pytest.mark.parametrize(
    "candidate",
    ["", "0" * 15, "0" * 17, "0123456789ABCDEF", "0123456789abcdei", "0123456789abcdel", "o" * 16],
)
def test_invalid_ids(candidate):
    assert not is_valid_id(candidate)


def test_non_string_is_not_an_id():
    assert not is_valid_id(12345)  # type: ignore[arg-type]


def test_sorted_in_creation_order():
    made = [new_id() for _ in range(20_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_unique_and_ordered_per_thread_across_threads():
    per_thread: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(len(per_thread))

    def make(out: list[str]) -> None:
        start.wait()
        out.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [made for out in per_thread for made in out]
    assert len(set(everything)) == len(everything)
    for out in per_thread:
        assert out == sorted(out)


def test_same_millisecond_still_increases(frozen_clock):
    made = [new_id() for _ in range(1_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert {id_datetime(m) for m in made} == {datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)}


def test_clock_stepping_back_keeps_order(frozen_clock):
    frozen_clock(1_700_000_000_500)
    first = new_id()
    frozen_clock(1_700_000_000_000)
    second = new_id()
    assert second > first
    assert id_datetime(second) == id_datetime(first)


def test_random_part_overflow_borrows_the_next_millisecond(frozen_clock):
    frozen_clock(1_700_000_000_000)
    first = new_id()
    ids._generator.last_random = ids._RANDOM_LIMIT - 1
    second = new_id()
    assert second > first
    assert id_datetime(second) - id_datetime(first) == timedelta(milliseconds=1)


def test_id_datetime_is_creation_time():
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    made = new_id()
    after = datetime.now(UTC)
    assert before <= id_datetime(made) <= after


def test_id_datetime_rejects_non_ids():
    with pytest.raises(ValueError, match="not an id"):
        id_datetime("nope")


def test_forked_child_does_not_repeat_the_parent(frozen_clock):
    # With the clock frozen, a child that kept its parent's state would make exactly the
    # parent's next id.
    new_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, new_id().encode())
        os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert is_valid_id(child_id)
    assert child_id != new_id()
