"""The admin writes schedules through the services: same checks, same next_run."""

from __future__ import annotations

from django.test import Client

from schedules.models import Schedule
from tests.factories import make_pipeline, make_user


def admin_client() -> Client:
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def form(project, pipeline, **changes) -> dict:
    data = {
        "project": project.id,
        "pipeline": pipeline.id,
        "repository": "",
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "params": "{}",
        "ref": "",
    }
    return {**data, **changes}


def test_adding_checks_and_computes_next_run(project):
    pipeline = make_pipeline(project, "tasks:\n  t: {steps: [{run: 'true'}]}\n").pipeline
    client = admin_client()
    url = "/admin/schedules/schedule/add/"

    refused = client.post(url, form(project, pipeline, cron="0 0 30 2 *", timezone="Nowhere"))
    assert refused.status_code == 200  # the form again, with the problems
    page = refused.content.decode()
    assert "never matches" in page and "IANA" in page
    assert not Schedule.objects.exists()

    added = client.post(url, form(project, pipeline))
    assert added.status_code == 302, added.content.decode()[:2000]
    schedule = Schedule.objects.get()
    assert schedule.pipeline == pipeline and schedule.next_run is not None
    listing = client.get("/admin/schedules/schedule/")
    assert listing.status_code == 200 and "pipeline main" in listing.content.decode()

    change = f"/admin/schedules/schedule/{schedule.id}/change/"
    assert client.post(change, {"paused": "on"}).status_code == 302
    schedule.refresh_from_db()
    assert schedule.paused and schedule.next_run is None

    delete = f"/admin/schedules/schedule/{schedule.id}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Schedule.objects.exists()
