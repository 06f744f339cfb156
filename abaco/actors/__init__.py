"""The actor domain: record ids, the records themselves, and their life cycles.

``ids`` and ``states`` depend on nothing else in abaco but ``errors``; ``models`` builds on
``states``. Everything below is the public surface; the worker, runners and in-actor
library that also live in this package are imported from their own modules.
"""

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
