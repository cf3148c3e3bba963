"""The step-result cache: hits skip work, and every invalidation path works."""

from datetime import timedelta

from django.utils import timezone

from builds import cache
from builds.models import CacheEntry
from builds.services import purge_cache
from tests.factories import make_pipeline, run_build, task_states

CHAIN = """
params: {version: "1"}
tasks:
  compile: {cache: true, steps: [{run: "echo compiled {{ params.version }}", output: artefact}]}
  test:
    cache: true
    needs: [compile]
    steps: [{run: "echo tested {{ tasks.compile.outputs.artefact }}"}]
  package: {cache: true, needs: [test], steps: [{run: "echo packaged"}]}
"""


def enqueued(monkeypatch):
    calls = []
    import builds.dispatch as dispatch

    real = dispatch.async_task

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch, "async_task", spy)
    return calls


def test_second_build_is_fully_cached_and_dispatches_no_job(
    project, inline_workers, fast_engine, monkeypatch
):
    make_pipeline(project, CHAIN)
    first = run_build(project)
    assert set(task_states(first).values()) == {"succeeded"}
    jobs = enqueued(monkeypatch)
    second = run_build(project)
    assert second.state == "succeeded"
    assert set(task_states(second).values()) == {"cached"}
    assert jobs == []
    assert second.tasks.get(name="compile").outputs["artefact"] == "compiled 1"


def test_changed_parameter_misses_and_downstream_keys_change(project, inline_workers, fast_engine):
    make_pipeline(project, CHAIN)
    run_build(project)
    build = run_build(project, params={"version": "2"})
    assert set(task_states(build).values()) == {"succeeded"}
    assert build.tasks.get(name="test").outputs["stdout_tail"].strip() == "tested compiled 2"


def test_purge_forces_a_rerun(project, user, inline_workers, fast_engine):
    make_pipeline(project, CHAIN)
    run_build(project)
    assert purge_cache(user=user, project=project, task_name="package") == 1
    states = task_states(run_build(project))
    assert states == {"compile": "cached", "test": "cached", "package": "succeeded"}


def test_expired_entries_miss(project, inline_workers, fast_engine, settings):
    make_pipeline(project, CHAIN)
    run_build(project)
    CacheEntry.objects.update(created_at=timezone.now() - timedelta(days=30))
    settings.BUILDSITE = {**settings.BUILDSITE, "CACHE_TTL_SECONDS": 3600}
    assert set(task_states(run_build(project)).values()) == {"succeeded"}


def test_size_limit_evicts_least_recently_used(project, db, settings):
    now = timezone.now()
    for i in range(5):
        cache.store(project_id=project.id, key=f"k{i}", task_name="t", outputs={"x": "y" * 100})
        CacheEntry.objects.filter(key=f"k{i}").update(last_used_at=now - timedelta(minutes=10 - i))
    cache.lookup(project_id=project.id, key="k0")  # k0 becomes the most recent
    size = CacheEntry.objects.first().size_bytes
    settings.BUILDSITE = {**settings.BUILDSITE, "CACHE_MAX_BYTES": size * 3}
    assert cache.evict() == 2
    assert set(CacheEntry.objects.values_list("key", flat=True)) == {"k0", "k3", "k4"}


def test_each_cached_rebuild_counts_one_hit_per_entry_once_upkeep_folds_them(
    project, inline_workers, fast_engine
):
    """A walk records its hits as one row; upkeep counts them on the entries, once."""
    from builds.maintenance import tick
    from builds.models import CacheHitBatch

    make_pipeline(project, CHAIN)
    run_build(project)
    stored = {e.key: e.last_used_at for e in CacheEntry.objects.all()}
    for rebuilds in (1, 2):
        build = run_build(project)
        assert set(task_states(build).values()) == {"cached"}
        tick()
        assert CacheHitBatch.objects.count() == 0
        entries = list(CacheEntry.objects.all())
        assert {e.hits for e in entries} == {rebuilds}
        assert all(e.last_used_at > stored[e.key] for e in entries)
    assert cache.fold_hits() == 0  # nothing recorded twice
    assert {e.hits for e in CacheEntry.objects.all()} == {2}


def test_folding_never_moves_an_entrys_last_use_back(project, db):
    cache.store(project_id=project.id, key="k", task_name="t", outputs={})
    entry = CacheEntry.objects.get(key="k")
    earlier = entry.last_used_at - timedelta(hours=1)
    from builds.models import CacheHitBatch

    CacheHitBatch.objects.create(entry_ids=[entry.id, entry.id + 1000], used_at=earlier)
    assert cache.fold_hits() == 1  # the entry that is gone counts nothing
    entry.refresh_from_db()
    assert entry.hits == 1 and entry.last_used_at > earlier


WIDE_CHAIN = (
    "tasks:\n"
    + "".join(
        f"  t{i}: {{cache: true, needs: [{f't{i - 1}' if i else ''}], "
        f"steps: [{{run: 'echo {i}'}}]}}\n"
        for i in range(6)
    )
    + "  plain: {needs: [t5], steps: [{run: 'echo not cached'}]}\n"
    + "  after: {cache: true, needs: [plain], steps: [{run: 'echo after'}]}\n"
)


def test_a_cached_chain_is_looked_up_in_one_query_not_one_per_wave(
    project, inline_workers, fast_engine
):
    """Keys of the cacheable tasks ahead are computed before looking any up: the six
    cached waves cost one lookup; `after` (behind a task that always runs) is keyed
    from that task's outputs once it has run, and hits too."""
    from django.db import connection

    make_pipeline(project, WIDE_CHAIN)
    run_build(project)
    lookups = []

    def count(execute, sql, params, many, context):
        if "builds_cacheentry" in sql and sql.lstrip().startswith("SELECT"):
            lookups.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        second = run_build(project)
    states = task_states(second)
    assert {states[f"t{i}"] for i in range(6)} == {"cached"}
    assert states["plain"] == "succeeded" and states["after"] == "cached"
    assert len(lookups) == 2  # the chain at trigger, `after` once `plain` ended


PLAIN_CHAIN = """
params: {version: "1"}
tasks:
  compile: {cache: true, steps: [{run: "echo compiled"}]}
  test: {cache: true, needs: [compile], steps: [{run: "echo tested"}]}
  package: {cache: true, needs: [test], steps: [{run: "echo packaged"}]}
"""


def _keys(build):
    return dict(build.tasks.values_list("name", "cache_key"))


def test_a_rebuild_reuses_its_keys_and_other_params_get_their_own(
    project, inline_workers, fast_engine
):
    """A new build's look-ahead keys are remembered per version, params, commit and
    secrets (resolution.KeysAhead): a rebuild of the same computes none, and any other
    params must still make every task run."""
    from builds.resolution import keys_ahead_of_new_build

    make_pipeline(project, PLAIN_CHAIN)
    first = run_build(project, params={"version": "1"})
    assert set(task_states(first).values()) == {"succeeded"}
    again = run_build(project, params={"version": "1"})
    assert set(task_states(again).values()) == {"cached"}
    assert _keys(again) == _keys(first)
    other = run_build(project, params={"version": "2"})
    assert set(task_states(other).values()) == {"succeeded"}
    assert set(_keys(other).values()).isdisjoint(_keys(first).values())
    assert len(keys_ahead_of_new_build.known) == 2
    keys_ahead_of_new_build.clear()  # computed afresh: the same keys
    fresh = run_build(project, params={"version": "1"})
    assert set(task_states(fresh).values()) == {"cached"}
    assert _keys(fresh) == _keys(first)


TAIL = """
tasks:
  build: {steps: [{run: "echo same"}]}
  pack: {cache: true, needs: [build], steps: [{run: "echo packed"}]}
"""


def test_a_build_whose_last_task_is_a_cache_hit_finishes(project, inline_workers, fast_engine):
    """`pack` goes PENDING -> READY -> CACHED while `build`'s end is settled: it passed
    through READY but is not open, so the build must still be seen to have finished."""
    make_pipeline(project, TAIL)
    assert run_build(project).state == "succeeded"
    second = run_build(project)
    assert task_states(second) == {"build": "succeeded", "pack": "cached"}
    assert second.state == "succeeded"
