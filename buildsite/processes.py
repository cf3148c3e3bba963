"""The processes of a running Buildsite, as `manage.py up` starts them (and the browser
tests and `bench/live.py` start the same ones)."""

from __future__ import annotations

import sys

from django.conf import settings


def process_commands(*, host: str, port: int) -> dict[str, list[str]]:
    """web (daphne) and workers (the django-q2 cluster, which also does the upkeep)."""
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    return {
        "web": [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            host,
            "-p",
            str(port),
            "buildsite.asgi:application",
        ],
        "workers": [*manage, "qcluster"],
    }
