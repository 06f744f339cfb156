"""The three life cycles: named paths, table properties, and random walks."""

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from abaco.actors.states import (
    ACTOR_TRANSITIONS,
    EXECUTION_TRANSITIONS,
    WORKER_TRANSITIONS,
    ActorStatus,
    ExecutionStatus,
    WorkerStatus,
    allowed,
    initial,
    is_terminal,
    machine_name,
    transition,
)
from abaco.errors import InvalidTransition

A, W, E = ActorStatus, WorkerStatus, ExecutionStatus

TABLES = {
    ActorStatus: ACTOR_TRANSITIONS,
    WorkerStatus: WORKER_TRANSITIONS,
    ExecutionStatus: EXECUTION_TRANSITIONS,
}
KINDS = list(TABLES)


def walk(path):
    current = path[0]
    for target in path[1:]:
        current = transition(current, target)
    return current


# -- named paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        [A.SUBMITTED, A.READY],
        [A.SUBMITTED, A.ERROR, A.SUBMITTED, A.READY],
        [A.READY, A.SUBMITTED, A.SUBMITTED, A.READY, A.ERROR, A.READY],
        [
            W.REQUESTED,
            W.SPAWNER_SETUP,
            W.PULLING_IMAGE,
            W.CREATING_CONTAINER,
            W.UPDATING_STORE,
            W.READY,
            W.BUSY,
            W.READY,
            W.SHUTDOWN_REQUESTED,
            W.SHUTTING_DOWN,
        ],
        [W.REQUESTED, W.SPAWNER_SETUP, W.PULLING_IMAGE, W.ERROR],
        [W.REQUESTED, W.SPAWNER_SETUP, W.SHUTDOWN_REQUESTED, W.SHUTTING_DOWN],
        [E.SUBMITTED, E.RUNNING, E.COMPLETE],
        [E.SUBMITTED, E.WAITING, E.SCHEDULED, E.RUNNING, E.ERROR],
        [E.SUBMITTED, E.SCHEDULED, E.WAITING, E.SCHEDULED, E.RUNNING, E.ABORTED],
        [E.SUBMITTED, E.WAITING, E.ABORTED],
    ],
    ids=lambda path: "-".join(path),
)
def test_named_paths(path):
    assert walk(path) is path[-1]


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (A.READY, A.READY),
        (W.REQUESTED, W.READY),
        (W.READY, W.REQUESTED),
        (W.SHUTDOWN_REQUESTED, W.READY),
        (W.SHUTTING_DOWN, W.ERROR),
        (W.ERROR, W.REQUESTED),
        (E.RUNNING, E.SUBMITTED),  # a reclaimed message is a new attempt, not a rewind
        (E.WAITING, E.RUNNING),
        (E.WAITING, E.ERROR),
        (E.COMPLETE, E.ERROR),
        (E.ERROR, E.RUNNING),
        (E.ABORTED, E.SUBMITTED),
    ],
)
def test_forbidden_moves(current, target):
    with pytest.raises(InvalidTransition) as caught:
        transition(current, target)
    assert (caught.value.current, caught.value.target) == (current, target)
    assert caught.value.machine == machine_name(current)


def test_terminal_statuses():
    assert {s for s in ActorStatus if is_terminal(s)} == set()
    assert {s for s in WorkerStatus if is_terminal(s)} == {W.SHUTTING_DOWN, W.ERROR}
    assert {s for s in ExecutionStatus if is_terminal(s)} == {E.COMPLETE, E.ERROR, E.ABORTED}


def test_initial_statuses():
    assert initial(ActorStatus) is A.SUBMITTED
    assert initial(WorkerStatus) is W.REQUESTED
    assert initial(ExecutionStatus) is E.SUBMITTED
    with pytest.raises(TypeError):
        initial(str)  # type: ignore[type-var]


def test_machine_names():
    assert [machine_name(A.READY), machine_name(W.READY), machine_name(E.ERROR)] == [
        "actor",
        "worker",
        "execution",
    ]


# -- the tables as a whole -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_table_covers_every_status_and_stays_in_its_machine(kind):
    table = TABLES[kind]
    assert set(table) == set(kind)
    for current, targets in table.items():
        assert isinstance(targets, frozenset)
        assert all(type(target) is kind for target in targets)
        assert allowed(current) == targets


@pytest.mark.parametrize("kind", KINDS)
def test_every_status_is_reachable_from_the_initial_one(kind):
    seen = {initial(kind)}
    frontier = [initial(kind)]
    while frontier:
        for target in allowed(frontier.pop()):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(kind)


@pytest.mark.parametrize("kind", [WorkerStatus, ExecutionStatus])
def test_every_status_can_reach_a_terminal_one(kind):
    for start in kind:
        seen, frontier = {start}, [start]
        while frontier:
            for target in allowed(frontier.pop()) - seen:
                seen.add(target)
                frontier.append(target)
        assert any(is_terminal(status) for status in seen), start


def test_tables_are_read_only():
    with pytest.raises(TypeError):
        ACTOR_TRANSITIONS[A.READY] = frozenset()  # type: ignore[index]


# -- statuses of the wrong machine ---------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (A.READY, W.READY),  # equal as strings, but not the same machine
        (W.READY, A.ERROR),
        (E.SUBMITTED, A.SUBMITTED),
        (A.SUBMITTED, "READY"),
        ("SUBMITTED", A.READY),
    ],
)
def test_mixing_machines_is_a_type_error(current, target):
    with pytest.raises(TypeError):
        transition(current, target)


@pytest.mark.parametrize("function", [allowed, is_terminal, machine_name])
def test_plain_strings_are_a_type_error(function):
    with pytest.raises(TypeError):
        function("READY")


# -- random walks --------------------------------------------------------------------------


def random_walk(kind):
    """A state machine that moves a status of ``kind`` at random and checks the table."""

    statuses = sorted(kind)

    class Walk(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.current = initial(kind)

        @precondition(lambda self: not is_terminal(self.current))
        @rule(data=st.data())
        def allowed_move(self, data):
            target = data.draw(st.sampled_from(sorted(allowed(self.current))))
            assert transition(self.current, target) is target
            self.current = target

        @rule(status=st.sampled_from(statuses))
        def any_move(self, status):
            if status in TABLES[kind][self.current]:
                assert transition(self.current, status) is status
                self.current = status
            else:
                with pytest.raises(InvalidTransition):
                    transition(self.current, status)

        @rule(other=st.sampled_from([k for k in KINDS if k is not kind]), data=st.data())
        def foreign_move(self, other, data):
            target = data.draw(st.sampled_from(sorted(other)))
            with pytest.raises(TypeError):
                transition(self.current, target)

        @rule()
        def start_again(self):
            self.current = initial(kind)

        @invariant()
        def terminal_means_nothing_allowed(self):
            assert is_terminal(self.current) == (not allowed(self.current))
            if is_terminal(self.current):
                for target in statuses:
                    with pytest.raises(InvalidTransition):
                        transition(self.current, target)

        @invariant()
        def status_stays_in_its_machine(self):
            assert type(self.current) is kind

    Walk.__name__ = f"{kind.__name__}Walk"
    return Walk


TestActorWalk = random_walk(ActorStatus).TestCase
TestWorkerWalk = random_walk(WorkerStatus).TestCase
TestExecutionWalk = random_walk(ExecutionStatus).TestCase
