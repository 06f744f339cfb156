"""Entity records for the persist queue."""

from __future__ import annotations

import pytest

from abaco.errors import BadRequest
from abaco.persist_queue import EntityRecord


def test_a_record_round_trips_through_its_wire_form():
    record = EntityRecord.of("outcome", "actor1", "exec1", {"status": "COMPLETE"})
    assert EntityRecord.from_wire(record.to_wire()) == record
    assert record.json == '{"status": "COMPLETE"}'


@pytest.mark.parametrize(
    "data",
    [None, "x", {"kind": "outcome"}, {"kind": "other", "group": "g", "id": "i", "json": "{}"}],
)
def test_anything_else_is_refused(data):
    with pytest.raises(BadRequest):
        EntityRecord.from_wire(data)
