import json
import time

import pytest

from evals import services as dataset_services
from prompts import services as prompt_services


def send(client, method, path, body=None):
    return getattr(client, method)(path, json.dumps(body), content_type="application/json")


def wait_for(build_id: int, ticks: int = 100):
    """Drive a build to its end with inline workers (as tests.factories.run_build)."""
    from builds.maintenance import tick
    from builds.models import Build

    for _ in range(ticks):
        build = Build.objects.get(id=build_id)
        if build.finished_at is not None:
            return build
        tick()
        time.sleep(0.05)
    raise AssertionError(f"build {build_id} did not end: {build.state}")


@pytest.fixture
def capital(user, project):
    """Prompt `capital` (text, offline provider: echoes the question) and dataset
    `capitals` whose three items: 1 passes, 2 fails one of its two assertions (weights
    1 and 3: score 0.25), 3 has template markup in its data and passes."""
    prompt_services.create_prompt(
        user=user,
        project=project,
        name="capital",
        body={"template": "What is the capital of {{ country }}?", "variables": ["country"]},
    )
    dataset_services.create_dataset(user=user, project=project, name="capitals")
    items = [
        ({"country": "France"}, [{"type": "contains", "value": "France"}]),
        (
            {"country": "Italy"},
            [
                {"type": "contains", "value": "Italy"},
                {"type": "contains", "value": "London", "weight": 3},
            ],
        ),
        (
            {"country": "{{ params.x }} {% raw %}"},
            [{"type": "contains", "value": "of {{ params.x }} {% raw %}?"}],
        ),
    ]
    for variables, expect in items:
        dataset_services.add_item(
            user=user, project=project, name="capitals", variables=variables, expect=expect
        )
    return project


@pytest.fixture
def down_provider(capital, user, settings):
    """Provider `down` of the project: an OpenAI-compatible URL on a port nobody
    listens on, no retries."""
    import socket

    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prompt_services.save_provider(
        user=user,
        project=capital,
        name="down",
        kind="openai",
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        api_key="sk-test",
        max_retries=0,
        timeout=5,
    )
    return "down"
