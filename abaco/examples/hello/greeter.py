"""The sample actor of ``abaco up --demo``: it greets whoever writes to it.

What a Python actor's handler prints is its execution's log.
"""

from abaco.actors.context import get_context


def handle(message: str) -> None:
    """Greet the sender of ``message``."""
    context = get_context()
    print(f"hello, {message}! (execution {context['execution_id']} of actor {context['actor_id']})")
