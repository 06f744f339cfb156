"""The actor domain: record ids, the records themselves, and their life cycles.

``ids`` and ``states`` depend on nothing else in abaco but ``errors``; ``models`` builds on
``states``. Everything below is the public surface; the worker, runners and in-actor
library that also live in this package are imported from their own modules.

Names are loaded on first use (PEP 562): actor code imports ``abaco.actors.context``
in every zygote, and must not pay for the records and their converter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ids import ID_LENGTH as ID_LENGTH
    from .ids import id_datetime as id_datetime
    from .ids import is_valid_id as is_valid_id
    from .ids import new_id as new_id
    from .models import DEFAULT_TENANT as DEFAULT_TENANT
    from .models import Actor as Actor
    from .models import ActorType as ActorType
    from .models import Alias as Alias
    from .models import Execution as Execution
    from .models import Nonce as Nonce
    from .models import Permission as Permission
    from .models import PermissionLevel as PermissionLevel
    from .models import Worker as Worker
    from .models import converter as converter
    from .models import fields_of as fields_of
    from .models import from_dict as from_dict
    from .models import to_dict as to_dict
    from .models import utcnow as utcnow
    from .states import ACTOR_TRANSITIONS as ACTOR_TRANSITIONS
    from .states import EXECUTION_TRANSITIONS as EXECUTION_TRANSITIONS
    from .states import WORKER_TRANSITIONS as WORKER_TRANSITIONS
    from .states import ActorStatus as ActorStatus
    from .states import ExecutionStatus as ExecutionStatus
    from .states import WorkerStatus as WorkerStatus
    from .states import allowed as allowed
    from .states import initial as initial
    from .states import is_terminal as is_terminal
    from .states import machine_name as machine_name
    from .states import transition as transition

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ID_LENGTH": "ids",
    "id_datetime": "ids",
    "is_valid_id": "ids",
    "new_id": "ids",
    "DEFAULT_TENANT": "models",
    "Actor": "models",
    "ActorType": "models",
    "Alias": "models",
    "Execution": "models",
    "Nonce": "models",
    "Permission": "models",
    "PermissionLevel": "models",
    "Worker": "models",
    "converter": "models",
    "fields_of": "models",
    "from_dict": "models",
    "to_dict": "models",
    "utcnow": "models",
    "ACTOR_TRANSITIONS": "states",
    "EXECUTION_TRANSITIONS": "states",
    "WORKER_TRANSITIONS": "states",
    "ActorStatus": "states",
    "ExecutionStatus": "states",
    "WorkerStatus": "states",
    "allowed": "states",
    "initial": "states",
    "is_terminal": "states",
    "machine_name": "states",
    "transition": "states",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
