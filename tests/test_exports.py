"""The public surface, pinned: adding or removing a public name is a deliberate change here."""

from __future__ import annotations

import abaco
import abaco.actors
import abaco.channels
import abaco.stores


def _public(module) -> set[str]:
    # dir(), not vars(): names that load on first use are listed by the module's __dir__.
    return {name for name in dir(module) if not name.startswith("_")} - {"annotations"}


def test_abaco_exports_settings_errors_and_version():
    assert _public(abaco) >= {
        "Settings",
        "load_settings",
        "AbacoError",
        "ChannelError",
        "StoreError",
        "NotFound",
        "Conflict",
        "InvalidTransition",
        "WireError",
    }
    assert abaco.__version__


def test_channels_exports_exactly_the_channel_api():
    assert _public(abaco.channels) == {
        "BlockingHub",
        "Channel",
        "ChannelStatistics",
        "Delivery",
        "DuplexChannel",
        "Hub",
        "Kind",
        "Member",
        "MembershipEvent",
        "MembershipWatch",
        "QueueChannel",
        "ReplyChannel",
        "Request",
        "RequestChannel",
        "Subscription",
        "TopicChannel",
        "Transport",
        "open_blocking_hub",
        "open_hub",
    }


def test_every_error_is_an_abaco_error():
    for name in dir(abaco):
        value = getattr(abaco, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, abaco.AbacoError), name


def test_actors_reexports_everything_its_modules_declare():
    from abaco.actors import ids, models, states

    for module in (ids, models, states):
        for name in module.__all__:
            assert getattr(abaco.actors, name, None) is getattr(module, name), name


def test_stores_declares_its_public_names():
    for name in abaco.stores.__all__:
        assert hasattr(abaco.stores, name), name


def test_actor_code_imports_its_library_without_the_platform():
    import subprocess
    import sys

    probe = (
        "import sys, abaco.actors.context; "
        "print(sorted(m for m in ('abaco.config', 'abaco.actors.models', 'cattrs', 'trio') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
