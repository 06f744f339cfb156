"""The one exception tree of abaco.

Every error the platform raises on purpose is an :class:`AbacoError`. Errors that
come from other libraries (redis, zmq, sqlite, ...) are mapped at the edge, in the
module that talks to that library, and raised ``from`` the original, so callers
never have to catch a third-party exception::

    AbacoError
    ├── ConfigError                 abaco.conf or an ABACO__* override is wrong
    ├── ChannelError
    │   ├── ChannelClosed           *our* side closed the channel
    │   ├── DestinationUnavailable  the other side is gone (cause chained)
    │   ├── SendFailed              the transport refused a send (cause chained)
    │   ├── ChannelTimeout          no answer in time
    │   ├── Aborted                 the operation was aborted by its owner
    │   └── WireError               a frame could not be decoded (size, depth, form)
    ├── StoreError
    │   ├── StoreUnavailable        the Redis/Valkey server cannot be reached
    │   ├── StreamGone              a stream read with a consumer group was deleted
    │   ├── NotFound                no record with that id
    │   ├── Conflict                the record exists already, or a compare-and-set lost
    │   └── SchemaError             a stored record is of a newer schema than this code
    ├── ValkeyError                 the embedded Valkey server failed to start or stop
    ├── RunnerError                 an execution runner could not start (bad module, bwrap)
    ├── InvalidTransition           a status change that the transition table forbids
    ├── Unauthenticated             no valid token with the request
    ├── PermissionDenied            the caller may not do this
    ├── BadRequest                  input that does not validate
    │   └── BundleError             a bundle, its manifest or a bundle reference is invalid
    └── RemoteError                 an error raised in another actor, carried here
"""

from __future__ import annotations


class AbacoError(Exception):
    """Base class of every error abaco raises on purpose."""


class ConfigError(AbacoError):
    """The configuration file or an environment override is invalid."""


class ChannelError(AbacoError):
    """Base class of channel errors."""


class ChannelClosed(ChannelError):
    """This side closed the channel; using it again is a bug in the caller."""


class DestinationUnavailable(ChannelError):
    """The receiving side is gone or unreachable; the cause is chained."""


class SendFailed(ChannelError):
    """The transport refused to send; the cause is chained."""


class ChannelTimeout(ChannelError):
    """No message or answer arrived in time."""


class Aborted(ChannelError):
    """The operation was aborted by the side that owns it."""


class WireError(ChannelError):
    """A frame could not be decoded: too large, too deep, or malformed."""


class StoreError(AbacoError):
    """Base class of store errors."""


class StoreUnavailable(StoreError):
    """The Redis/Valkey server cannot be reached or failed; the cause is chained."""


class StreamGone(StoreError):
    """A stream read through a consumer group is gone (deleted before or during the read)."""


class NotFound(StoreError):
    """No record exists with the given id."""


class Conflict(StoreError):
    """The record already exists, or a compare-and-set lost every retry."""


class SchemaError(StoreError):
    """A stored record cannot be read by this version of the code."""


class ValkeyError(AbacoError):
    """The embedded Valkey server could not be started or stopped."""


class RunnerError(AbacoError):
    """A runner itself failed: the actor's module does not import, or bwrap cannot start."""


class InvalidTransition(AbacoError):
    """A status change that the transition table does not allow."""

    def __init__(self, machine: str, current: str, target: str) -> None:
        super().__init__(f"{machine}: cannot go from {current} to {target}")
        self.machine = machine
        self.current = current
        self.target = target


class Unauthenticated(AbacoError):
    """A request without a valid token (401)."""


class PermissionDenied(AbacoError):
    """The caller lacks the permission the operation needs."""


class BadRequest(AbacoError):
    """Input that does not validate; the message says what is wrong."""


class BundleError(BadRequest):
    """A bundle, its manifest or a bundle reference is invalid; the message says how."""


class RemoteError(AbacoError):
    """An error raised by another actor, carried across a channel.

    ``origin`` names the actor that raised it and ``type_name`` the class it raised there.
    """

    def __init__(self, message: str, *, origin: str, type_name: str, traceback: str = "") -> None:
        super().__init__(f"{origin} raised {type_name}: {message}")
        self.origin = origin
        self.type_name = type_name
        self.remote_traceback = traceback
