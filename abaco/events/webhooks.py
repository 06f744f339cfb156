"""Posting events to webhooks: the address guard, timeouts and bounded retries.

A webhook URL is the actor owner's choice, and the platform posts to it from inside the
operator's network, so the guard (SSRF) refuses every address that is not public:
loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT) and the
IPv4 addresses hidden in IPv6 forms of those, unless ``[events] allow_private_webhooks``
or ``webhook_allowed_networks`` says otherwise. The check is made twice:

- at registration (:func:`check_webhook_url`): the scheme must be http or https, and a
  host written as an address (or ``localhost``) must pass the guard;
- at each delivery attempt (:func:`post_event`): the host is resolved, every address it
  resolves to must pass, and the request goes to the address that was checked (the
  ``Host`` header and TLS server name stay the URL's host), so a name that resolves
  differently a moment later (DNS rebinding) cannot slip through. Redirects are not
  followed and proxy variables are ignored, for the same reason.

An attempt that fails to connect, times out, or gets a 5xx or 429 answer is retried after
``webhook_backoff`` seconds, doubling, up to ``webhook_attempts`` attempts in all; any
other answer ends the delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from abaco.errors import BadRequest

if TYPE_CHECKING:
    from abaco.config import EventsSettings

__all__ = [
    "DeliveryReport",
    "WebhookPolicy",
    "WebhookRefused",
    "check_webhook_url",
    "open_webhook_client",
    "post_event",
    "resolve_webhook_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Answers worth another attempt: the receiver is overloaded or failing for now.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_LOCAL_NAMES = ("localhost", "localhost.")


class WebhookRefused(BadRequest):
    """The webhook's URL or the address it resolves to is not allowed."""


@attrs.frozen(kw_only=True)
class WebhookPolicy:
    """Where webhooks may go and how hard delivery tries."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 1.0

    @classmethod
    def from_settings(cls, settings: EventsSettings) -> WebhookPolicy:
        """The policy ``[events]`` describes."""
        networks = tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in settings.webhook_allowed_networks.split(",")
            if part.strip()
        )
        return cls(
            allow_private=settings.allow_private_webhooks,
            allowed_networks=networks,
            timeout=settings.webhook_timeout,
            attempts=settings.webhook_attempts,
            backoff=settings.webhook_backoff,
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why webhooks may not go to ``address``; None when they may."""
        if any(address in network for network in self.allowed_networks):
            return None
        if self.allow_private:
            return None
        kind = _non_public_kind(address)
        return None if kind is None else f"{address} is a {kind} address"


def _non_public_kind(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _teredo_client(address)
        if embedded is not None:
            return _non_public_kind(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, matches in checks if matches), None)


def _teredo_client(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    teredo = address.teredo
    return None if teredo is None else teredo[1]


def _split(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of a webhook URL; WebhookRefused when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(
            f"Invalid webhook parameter: {url!r} is not a valid URL: {exc}."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(
            f"Invalid webhook parameter: {url!r} must be an http:// or https:// URL with a host."
        )
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_webhook_url(url: str, policy: WebhookPolicy) -> None:
    """WebhookRefused (a 400) unless ``url`` is http(s) and its literal host is allowed.

    A host given as a name is resolved only when an event is delivered; ``localhost``
    counts as loopback here already.
    """
    _, host, _ = _split(url)
    address = _literal(host)
    if address is None and host.lower() in _LOCAL_NAMES:
        address = ipaddress.ip_address("127.0.0.1")
    if address is not None and (reason := policy.refusal(address)) is not None:
        raise WebhookRefused(f"Invalid webhook parameter: webhooks may not go to {host}: {reason}.")


async def resolve_webhook_host(host: str, port: int, policy: WebhookPolicy) -> IPAddress:
    """The address to post to: ``host`` resolved, every address it has allowed.

    WebhookRefused when one is not (a name with one private address among public ones is
    refused whole: which one a client would pick is not ours to know), or it has none.
    """
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise WebhookRefused(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise WebhookRefused(f"{host} resolves to no address")
    for address in addresses:
        if (reason := policy.refusal(address)) is not None:
            raise WebhookRefused(f"webhooks may not go to {host}: {reason}")
    return addresses[0]


@attrs.frozen(kw_only=True)
class DeliveryReport:
    """How a webhook delivery ended."""

    delivered: bool
    attempts: int
    #: The last answer's status code, if there was an answer.
    status_code: int | None = None
    #: Why it was not delivered ("" when it was).
    reason: str = ""


def _pinned(url: str, address: IPAddress) -> tuple[str, dict[str, Any], str]:
    """The URL rewritten to ``address``, the request extensions, and the Host header."""
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    original = parts.hostname or ""
    host_header = original if parts.port is None else f"{original}:{parts.port}"
    return pinned, {"sni_hostname": original}, host_header


async def _attempt(
    client: httpx.AsyncClient, url: str, event: dict[str, Any], policy: WebhookPolicy
) -> tuple[bool, int | None, str]:
    """One POST: (worth retrying, status code, what went wrong or "").

    The whole attempt (resolving, connecting, sending, the answer's status line) is
    bounded by the policy's timeout; the answer's body is never read.
    """
    _, host, port = _split(url)
    with trio.move_on_after(policy.timeout):
        address = await resolve_webhook_host(host, port, policy)
        pinned, extensions, host_header = _pinned(url, address)
        request = client.build_request(
            "POST",
            pinned,
            json=event,
            headers={"Host": host_header},
            timeout=policy.timeout,
            extensions=extensions,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return True, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await response.aclose()
        if response.is_success:
            return False, response.status_code, ""
        retry = response.status_code in _RETRY_STATUSES
        return retry, response.status_code, f"the receiver answered {response.status_code}"
    return True, None, f"Timeout: no answer within {policy.timeout:g} s"


async def post_event(
    client: httpx.AsyncClient, url: str, event: dict[str, Any], policy: WebhookPolicy
) -> DeliveryReport:
    """POST ``event`` as JSON to ``url`` with the policy's guard, timeout and retries.

    Never raises for the receiver's or the URL's faults; the report says what happened.
    ``client`` should not follow redirects nor trust proxy variables (see
    :func:`open_webhook_client`).
    """
    reason = ""
    status: int | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            retry, status, reason = await _attempt(client, url, event, policy)
        except WebhookRefused as exc:
            return DeliveryReport(delivered=False, attempts=attempt, reason=str(exc))
        if not reason:
            return DeliveryReport(delivered=True, attempts=attempt, status_code=status)
        if not retry or attempt == policy.attempts:
            return DeliveryReport(
                delivered=False, attempts=attempt, status_code=status, reason=reason
            )
        await trio.sleep(policy.backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable: the loop returns on its last attempt")


def open_webhook_client() -> httpx.AsyncClient:
    """An HTTP client for webhooks: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)
