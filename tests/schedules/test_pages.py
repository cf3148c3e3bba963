"""The pipeline page lists the pipeline's schedules."""

from __future__ import annotations

from datetime import UTC, datetime

from django.test import Client

from schedules.models import Schedule
from schedules.services import create_schedule, set_paused
from tests.factories import make_pipeline


def test_the_pipeline_page_shows_its_schedules(user, project):
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n")
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n", name="other")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    create_schedule(
        user=None,
        project=project,
        pipeline="main",
        cron="30 4 * * *",
        timezone="Europe/Berlin",
        now=now,
    )
    nightly = create_schedule(user=None, project=project, pipeline="main", cron="0 1 * * *")
    set_paused(user=None, schedule=nightly, paused=True)
    create_schedule(user=None, project=project, pipeline="other", cron="15 15 * * *")
    Schedule.objects.filter(id=nightly.id).update(last_error="unknown parameter 'who'")
    client = Client()
    client.force_login(user)

    page = client.get(f"/p/{project.slug}/pipelines/main/").content.decode()
    assert "Schedules" in page
    assert "30 4 * * *" in page and "Europe/Berlin" in page
    assert "2030-01-01 03:30" in page  # 04:30 in Berlin, shown in the server's zone (UTC)
    assert "0 1 * * *" in page and "paused" in page
    assert "unknown parameter &#x27;who&#x27;" in page
    assert "15 15 * * *" not in page  # another pipeline's

    empty = client.get(f"/p/{project.slug}/pipelines/other/").content.decode()
    assert "15 15 * * *" in empty and "30 4 * * *" not in empty
