"""The channel library: first-class channel values over Redis and 0MQ.

A channel is a small immutable value (transport, address, kind) that can travel inside
any message and arrives at the receiver as a working channel. Kinds follow Kumori's
connectors:

- :class:`QueueChannel`: load-balanced, each message to one consumer; on Redis durable
  and at-least-once (``get``/``ack``, or ``async with ch.receive() as msg``).
- :class:`TopicChannel`: publish/subscribe with topic-prefix filters.
- :class:`RequestChannel`: ``await ch.request(msg, timeout=...)``; the request carries
  the requester's reply channel, and the replier answers on it.
- :class:`DuplexChannel`: addressed sends to named members, ``membership()`` and
  membership-change events.

Everything starts from a hub::

    async with open_redis(url) as redis, open_hub(redis) as hub:
        jobs = hub.open_queue("jobs")
        await jobs.put({"reply": hub.open_topic()})

Errors (see :mod:`abaco.errors`): ``ChannelClosed`` (our side), ``DestinationUnavailable``
and ``SendFailed`` (theirs), ``ChannelTimeout``, ``Aborted``, ``WireError``.
"""

from abaco._blocking import BlockingHub as BlockingHub
from abaco._blocking import open_blocking_hub as open_blocking_hub
from abaco._channel_values import Channel as Channel
from abaco._channel_values import DuplexChannel as DuplexChannel
from abaco._channel_values import Kind as Kind
from abaco._channel_values import QueueChannel as QueueChannel
from abaco._channel_values import ReplyChannel as ReplyChannel
from abaco._channel_values import RequestChannel as RequestChannel
from abaco._channel_values import TopicChannel as TopicChannel
from abaco._channel_values import Transport as Transport
from abaco._handles import ChannelStatistics as ChannelStatistics
from abaco._handles import Delivery as Delivery
from abaco._handles import Member as Member
from abaco._handles import MembershipEvent as MembershipEvent
from abaco._handles import MembershipWatch as MembershipWatch
from abaco._handles import Request as Request
from abaco._handles import Subscription as Subscription
from abaco._hub import Hub as Hub
from abaco._hub import open_hub as open_hub
