"""The artifact store on the S3 protocol (django-storages + boto3 against a real S3
endpoint on 127.0.0.1): the same flow as the default directory store."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from builds.artifacts import artifact_store, blob_name
from builds.maintenance import clean_old_files
from builds.models import Blob, Build
from builds.selectors import task_log
from tests.factories import api_client, make_pipeline, run_build, task_states
from tests.s3 import S3Server

PIPELINE = """
params: {n: "1"}
tasks:
  make:
    steps: [{run: "mkdir -p out && echo payload-{{ params.n }} > out/data.txt"}]
    artifacts: [out/]
  use: {needs: [make], steps: [{run: "cat out/data.txt"}]}
"""


@pytest.fixture
def s3_store(settings, monkeypatch, tmp_path):
    server = S3Server(tmp_path)
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    settings.BUILDSITE = {
        **settings.BUILDSITE,
        "ARTIFACTS_URL": server.env["BUILDSITE_ARTIFACTS_URL"],
        "BLOB_GRACE_SECONDS": 0,
    }
    artifact_store.cache_clear()
    try:
        yield server
    finally:
        artifact_store.cache_clear()
        server.stop()


def test_artifacts_go_through_the_s3_store(project, user, inline_workers, fast_engine, s3_store):
    make_pipeline(project, PIPELINE)
    build = run_build(project)
    assert task_states(build) == {"make": "succeeded", "use": "succeeded"}
    assert "payload-1" in task_log(build=build, name="use")
    digest = hashlib.sha256(b"payload-1\n").hexdigest()
    assert s3_store.object_keys() == [f"buildsite/{blob_name(digest)}"]
    response = api_client(user, project).get(f"/api/builds/{build.id}/artifacts/make/out/data.txt")
    assert b"".join(response.streaming_content) == b"payload-1\n"


def test_retention_deletes_unnamed_objects_from_the_bucket(
    project, inline_workers, fast_engine, s3_store
):
    make_pipeline(project, PIPELINE)
    old = run_build(project, params={"n": "old"})
    run_build(project, params={"n": "new"})
    Build.objects.filter(id=old.id).update(finished_at=timezone.now() - timedelta(days=365))
    Blob.objects.update(last_used_at=timezone.now() - timedelta(hours=1))
    clean_old_files()
    new = hashlib.sha256(b"payload-new\n").hexdigest()
    assert s3_store.object_keys() == [f"buildsite/{blob_name(new)}"]
