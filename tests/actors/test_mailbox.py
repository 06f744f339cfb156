"""An actor's mailbox: the execution is recorded before its message is queued."""

from __future__ import annotations

import pytest

from abaco.actors.mailbox import MailboxMessage, mailbox_of, submit
from abaco.actors.states import ExecutionStatus
from abaco.channels import open_hub
from abaco.errors import BadRequest


async def test_submit_records_the_execution_then_queues_the_message(redis, stores, settings):
    async with open_hub(redis) as hub:
        mailbox = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, "a1")
        execution = await submit(
            stores, mailbox, actor_id="a1", body="hello", environment={"X": "1"}, username="bob"
        )
        assert (await stores.executions.get(execution.id)).status == ExecutionStatus.SUBMITTED
        delivery = await mailbox.get(timeout=1)
        message = MailboxMessage.from_wire(delivery.message)
        await delivery.ack()
    assert message.execution_id == execution.id
    assert (message.body, message.environment, message.username) == ("hello", {"X": "1"}, "bob")
    assert message.content_type == "str"


async def test_binary_messages_stay_bytes(redis, stores, settings):
    async with open_hub(redis) as hub:
        mailbox = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, "a1")
        await submit(
            stores,
            mailbox,
            actor_id="a1",
            body=b"\x00\xff",
            content_type="application/octet-stream",
        )
        delivery = await mailbox.get(timeout=1)
    assert MailboxMessage.from_wire(delivery.message).body == b"\x00\xff"


@pytest.mark.parametrize("data", [None, "text", {"kind": "other"}, {"kind": "message", "x": 1}])
def test_anything_else_is_not_a_mailbox_message(data):
    with pytest.raises(BadRequest):
        MailboxMessage.from_wire(data)


def test_an_unknown_content_type_is_refused():
    with pytest.raises(BadRequest, match="content type"):
        MailboxMessage(execution_id="e", actor_id="a", tenant="t", body="", content_type="xml")
