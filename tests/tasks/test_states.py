"""The state machine table, tested without a database."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.states import (
    TERMINAL,
    TRANSITIONS,
    BuildState,
    InvalidTransition,
    TaskState,
    build_state_of,
    can_transition,
    check_transition,
    sources_of,
)

S = TaskState
states = st.sampled_from(list(TaskState))


def test_the_happy_path_is_allowed():
    path = [S.PENDING, S.READY, S.QUEUED, S.RUNNING, S.SUCCEEDED]
    for old, new in zip(path, path[1:], strict=False):
        check_transition(old, new)


def test_retry_loop_and_cache_hit_and_upstream_failure_are_allowed():
    for old, new in [
        (S.RUNNING, S.RETRYING),
        (S.RETRYING, S.QUEUED),
        (S.READY, S.CACHED),
        (S.PENDING, S.UPSTREAM_FAILED),
    ]:
        assert can_transition(old, new)


@pytest.mark.parametrize(
    "old,new",
    [
        (S.PENDING, S.RUNNING),
        (S.QUEUED, S.SUCCEEDED),
        (S.SUCCEEDED, S.RUNNING),
        (S.CACHED, S.PENDING),
        (S.SUCCEEDED, S.PENDING),
        (S.READY, S.SUCCEEDED),
    ],
)
def test_forbidden_moves_raise_a_conflict_naming_both_states(old, new):
    with pytest.raises(InvalidTransition) as err:
        check_transition(old, new, "build")
    assert err.value.status == 409
    assert err.value.payload()["from_state"] == old.value
    assert err.value.payload()["to_state"] == new.value
    assert "build" in err.value.message


def test_every_non_terminal_state_can_be_cancelled():
    for state in set(TaskState) - TERMINAL:
        assert can_transition(state, S.CANCELLED)


def test_success_is_never_undone():
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
    assert TRANSITIONS[S.CACHED] == frozenset()


@given(states, states)
def test_check_agrees_with_the_table(old, new):
    allowed = new in TRANSITIONS[old]
    assert can_transition(old, new) is allowed
    if allowed:
        check_transition(old, new)
        assert old in sources_of(new)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(old, new)


@given(st.lists(states, min_size=1))
def test_build_state_follows_from_task_states(task_states):
    result = build_state_of(task_states, started=True)
    if not set(task_states) <= TERMINAL:
        assert result == BuildState.RUNNING
    elif {S.FAILED, S.UPSTREAM_FAILED} & set(task_states):
        assert result == BuildState.FAILED
    elif S.CANCELLED in task_states:
        assert result == BuildState.CANCELLED
    else:
        assert result == BuildState.SUCCEEDED


def test_unstarted_build_with_open_tasks_is_queued():
    assert build_state_of([S.PENDING, S.READY], started=False) == BuildState.QUEUED


@given(st.sampled_from(list(TaskState)), st.sampled_from(list(TaskState)))
def test_plain_strings_are_checked_against_the_table(old, new):
    """The hot path passes states as they come from the database: plain strings."""
    assert can_transition(str(old), str(new)) is (new in TRANSITIONS[old])


@given(st.text(max_size=12), st.sampled_from(list(TaskState)))
def test_an_unknown_state_is_an_error_not_a_refusal(text, state):
    known = {str(s) for s in TaskState}
    if text in known:
        return
    with pytest.raises(ValueError):
        can_transition(text, str(state))
    with pytest.raises(ValueError):
        can_transition(str(state), text)
