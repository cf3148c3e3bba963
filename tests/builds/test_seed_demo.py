"""The demo project `make run` seeds: what it holds, that seeding again changes nothing,
and that its builds run green on real workers (the release publishes its notes, the
evaluations split the two prompt versions, and the gate refuses the failing one)."""

import io
import time

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from builds.demo import DEMO_PIPELINE, content
from builds.models import Build, Pipeline
from builds.services import save_pipeline
from buildsite.models import Project
from docs_engine.models import Document
from evals.models import Dataset, Evaluation, LabelGate
from evals.selectors import results_of
from prompts.models import LabelMove, PromptTemplate
from tests.cluster import Cluster, wait_for
from tests.factories import api_client

LABEL = f"/api/projects/demo/prompts/{content.PROMPT}/labels/{content.GATED_LABEL}"


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def admin(db, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-123456")
    run("ensure_admin")
    return get_user_model().objects.get(username="admin")


def snapshot():
    """Row counts of everything the seed writes."""
    return {
        "pipelines": Pipeline.objects.count(),
        "builds": Build.objects.count(),
        "prompts": PromptTemplate.objects.count(),
        "versions": sum(p.versions.count() for p in PromptTemplate.objects.all()),
        "label moves": LabelMove.objects.count(),
        "datasets": Dataset.objects.count(),
        "dataset version": list(Dataset.objects.values_list("version", flat=True)),
        "gates": LabelGate.objects.count(),
        "evaluations": Evaluation.objects.count(),
        "documents": Document.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def test_seed_demo_writes_the_demo_once(admin):
    out = run("seed_demo")
    assert "Created project 'demo'" in out
    assert {p.name for p in Pipeline.objects.filter(project__slug="demo")} == {
        "demo",
        "release",
        "eval-release-notes",
    }
    prompt = PromptTemplate.objects.get(project__slug="demo", name="release-notes")
    assert list(prompt.versions.values_list("number", flat=True).order_by("number")) == [1, 2]
    assert prompt.labels.get(name="production").version.number == 1
    gate = LabelGate.objects.get(prompt=prompt, label="production")
    assert (gate.dataset.name, gate.min_pass_rate) == ("release-notes", 1.0)
    assert gate.dataset.items.filter(removed_in__isnull=True).count() == 3
    evaluations = Evaluation.objects.filter(prompt=prompt).order_by("version__number")
    assert [e.version.number for e in evaluations] == [1, 2]
    builds = Build.objects.filter(project__slug="demo")
    assert sorted(b.pipeline.name for b in builds) == [
        "demo",
        "eval-release-notes",
        "eval-release-notes",
        "release",
    ]
    assert {b.triggered_by for b in builds} == {admin}, "the document step needs an author"
    docs = {d.path: d for d in Document.objects.filter(project__slug="demo")}
    assert set(docs) == {"getting-started", "pipelines/overview", "prompts/overview"}
    assert all(d.published_revision_id == d.current_revision_id for d in docs.values())
    assert 'href="pipelines/overview"' in docs["getting-started"].current_revision.html

    before = snapshot()
    again = run("seed_demo")
    assert "Updated project 'demo'" in again and "started build" not in again
    assert "created" not in again
    assert snapshot() == before, "seeding again writes nothing and starts nothing"


def test_seed_demo_leaves_what_the_team_changed(admin):
    run("seed_demo")
    Document.objects.filter(path="prompts/overview").delete()
    LabelGate.objects.all().delete()
    Dataset.objects.all().delete()
    Build.objects.filter(pipeline__name="demo").delete()
    project = Project.objects.get(slug="demo")
    edited = DEMO_PIPELINE.replace("lint pass", "style pass")
    save_pipeline(user=admin, project=project, name="demo", definition=edited)
    evaluations = Evaluation.objects.count()
    run("seed_demo")
    assert not Document.objects.filter(path="prompts/overview").exists()
    assert not LabelGate.objects.exists(), "a removed gate stays removed"
    assert not Dataset.objects.exists(), "a removed dataset stays removed"
    assert Evaluation.objects.count() == evaluations, "and starts no evaluation"
    pipeline = Pipeline.objects.get(project=project, name="demo")
    assert "style pass" in pipeline.versions.order_by("-number")[0].definition
    # Nothing to show for the demo pipeline: it gets a first build again.
    assert Build.objects.filter(pipeline__name="demo").count() == 1


def test_seed_demo_needs_the_admin(db):
    with pytest.raises(CommandError, match="ensure_admin"):
        run("seed_demo")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_seeded_builds_run_green_on_two_workers(admin, capsys):
    started = time.monotonic()
    run("seed_demo")
    seeded = time.monotonic() - started
    ids = list(Build.objects.values_list("id", flat=True))
    with Cluster(workers=2):
        began = time.monotonic()
        wait_for(
            lambda: not Build.objects.filter(id__in=ids, finished_at__isnull=True).exists(),
            timeout=90,
            message="the seeded builds to finish",
        )
        ran = time.monotonic() - began
        states = dict(Build.objects.values_list("pipeline__name", "state").filter(id__in=ids))
        assert set(states.values()) == {"succeeded"}, states

        release = Build.objects.get(pipeline__name="release")
        notes = release.tasks.get(name="notes").outputs["notes"]
        assert set(notes) == {"summary", "highlights"}, "shaped by the version's schema"
        document = Document.objects.get(project__slug="demo", path="releases/1.0.0")
        assert document.published_revision_id == document.current_revision_id
        body = document.current_revision.body
        assert notes["summary"] in body and notes["highlights"][0] in body
        assert "Ran 3 tests" in body and "OK" in body, "drafted from the test output"
        assert document.current_revision.author == admin

        results = results_of(list(Evaluation.objects.order_by("version__number")))
        v1, v2 = (results[e.id] for e in Evaluation.objects.order_by("version__number"))
        assert v1.pass_rate == 1.0
        assert v2.pass_rate is not None and v2.pass_rate < content.MIN_PASS_RATE
        assert [i.item for i in v2.items if not i.passed] == [2]

        client = api_client(admin)
        refused = client.put(LABEL, {"version": 2}, content_type="application/json")
        assert refused.status_code == 409, refused.json()
        assert "is gated" in refused.json()["detail"]
        kept = client.put(LABEL, {"version": 1}, content_type="application/json")
        assert kept.status_code == 200, kept.json()

        # What `make run` used to promise still holds: the demo runs green on demand,
        # and its package comes from the cache the second time.
        out = run("build", "demo", "demo", "--param", "version=9.9", "--follow")
        build = Build.objects.latest("id")
        assert build.state == "succeeded", out
        assert "5/5 done" in out
        assert "version 9.9" in build.tasks.get(name="report").outputs["stdout_tail"]
        run("build", "demo", "demo", "--param", "version=9.9", "--follow")
        assert Build.objects.latest("id").tasks.get(name="package").state == "cached"
    with capsys.disabled():
        print(f"\nseed_demo: {seeded:.2f} s; seeded builds on 2 workers: {ran:.1f} s")
