"""Scheduling rules, tested as a pure function."""

from hypothesis import given
from hypothesis import strategies as st

from builds.scheduling import Candidate, choose, effective_priority

NOW = 1_000_000.0
CPU = {"cpu": 1}


def test_higher_priority_goes_first():
    cands = [Candidate(1, 0, NOW, CPU), Candidate(2, 10, NOW, CPU), Candidate(3, 5, NOW, CPU)]
    decision = choose(cands, capacity={"cpu": 2}, in_use={}, now=NOW, aging_per_minute=0)
    assert decision.dispatch == [2, 3]


def test_waiting_ages_a_low_priority_task_past_newer_high_priority_ones():
    old_low = Candidate(1, 0, NOW - 20 * 60, CPU)  # waited 20 minutes
    new_high = Candidate(2, 10, NOW, CPU)
    decision = choose(
        [new_high, old_low], capacity={"cpu": 1}, in_use={}, now=NOW, aging_per_minute=1.0
    )
    assert decision.dispatch == [1]


def test_a_nearing_deadline_is_preferred():
    relaxed = Candidate(1, 5, NOW, CPU)
    urgent = Candidate(2, 0, NOW, CPU, deadline=NOW + 30)
    decision = choose(
        [relaxed, urgent], capacity={"cpu": 1}, in_use={}, now=NOW, aging_per_minute=0
    )
    assert decision.dispatch == [2]
    assert effective_priority(urgent, NOW, 0) > effective_priority(
        Candidate(3, 0, NOW, deadline=NOW + 3600), NOW, 0
    )


def test_pools_missing_from_capacity_are_unlimited():
    cands = [Candidate(i, 0, NOW, {"gpu": 5}) for i in range(4)]
    assert len(choose(cands, capacity={}, in_use={}, now=NOW).dispatch) == 4


def test_claims_bigger_than_the_pool_are_reported_not_dispatched():
    decision = choose([Candidate(1, 0, NOW, {"cpu": 8})], capacity={"cpu": 4}, in_use={}, now=NOW)
    assert decision.dispatch == []
    assert "capacity 4" in decision.impossible[1]


def test_a_long_waiting_big_task_reserves_its_pool_against_small_ones():
    big = Candidate(1, 10, NOW - 120, {"cpu": 4})
    small = Candidate(2, 0, NOW, {"cpu": 1})
    decision = choose(
        [big, small], capacity={"cpu": 4}, in_use={"cpu": 2}, now=NOW, reserve_after=60
    )
    assert decision.dispatch == []
    fresh_big = Candidate(1, 10, NOW - 5, {"cpu": 4})
    decision = choose(
        [fresh_big, small], capacity={"cpu": 4}, in_use={"cpu": 2}, now=NOW, reserve_after=60
    )
    assert decision.dispatch == [2]


claims = st.dictionaries(st.sampled_from(["cpu", "mem", "llm"]), st.integers(0, 4), max_size=3)
candidates = st.lists(
    st.builds(
        Candidate,
        id=st.integers(0, 10_000),
        priority=st.integers(-5, 5),
        waiting_since=st.floats(NOW - 7200, NOW),
        claims=claims,
        deadline=st.none() | st.floats(NOW - 100, NOW + 7200),
    ),
    max_size=30,
    unique_by=lambda c: c.id,
)
pools = st.dictionaries(st.sampled_from(["cpu", "mem", "llm"]), st.integers(0, 6), max_size=3)


@given(candidates, pools, st.data())
def test_pools_are_never_over_committed(cands, capacity, data):
    in_use = {p: data.draw(st.integers(0, cap)) for p, cap in capacity.items()}
    decision = choose(cands, capacity=capacity, in_use=in_use, now=NOW)
    by_id = {c.id: c for c in cands}
    assert len(set(decision.dispatch)) == len(decision.dispatch)
    for pool, cap in capacity.items():
        used = in_use[pool] + sum(by_id[i].claims.get(pool, 0) for i in decision.dispatch)
        assert used <= cap
    assert not set(decision.dispatch) & set(decision.impossible)


def test_instant_candidates_fit_free_capacity_without_holding_it():
    # Pool full but for one slot: every task with nothing to run fits it in turn (each
    # frees the slot at once); the first task that holds its claim takes it for good.
    cands = [
        Candidate(1, 5, NOW, {"cpu": 1}),
        Candidate(2, 4, NOW, {"cpu": 1}),
        Candidate(3, 3, NOW, {"cpu": 1}),
        Candidate(4, 2, NOW, {"cpu": 1}),
        Candidate(5, 1, NOW, {"cpu": 2}),
    ]
    decision = choose(
        cands,
        capacity={"cpu": 2},
        in_use={"cpu": 1},
        now=NOW,
        aging_per_minute=0,
        instant={1, 2, 4, 5},
    )
    assert decision.dispatch == [1, 2, 3]
    # Nothing is free: tasks with nothing to run wait for the pool too.
    decision = choose(
        cands, capacity={"cpu": 2}, in_use={"cpu": 2}, now=NOW, aging_per_minute=0, instant={1, 2}
    )
    assert decision.dispatch == []


@given(candidates, pools, st.data())
def test_instant_candidates_leave_the_pools_as_they_were(cands, capacity, data):
    in_use = {p: data.draw(st.integers(0, cap)) for p, cap in capacity.items()}
    instant = {c.id for c in cands if data.draw(st.booleans())}
    decision = choose(cands, capacity=capacity, in_use=in_use, now=NOW, instant=instant)
    by_id = {c.id: c for c in cands}
    for pool, cap in capacity.items():
        held = [i for i in decision.dispatch if i not in instant]
        assert in_use[pool] + sum(by_id[i].claims.get(pool, 0) for i in held) <= cap
        for i in decision.dispatch:  # each one fitted when it was taken
            assert by_id[i].claims.get(pool, 0) <= cap - in_use[pool]
    # The others are chosen as if those taken with nothing to hold were not there.
    taken = set(decision.dispatch) & instant
    rest = [c for c in cands if c.id not in taken]
    plain = choose(rest, capacity=capacity, in_use=in_use, now=NOW).dispatch
    assert [i for i in decision.dispatch if i not in instant] == plain
