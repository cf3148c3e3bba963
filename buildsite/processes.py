"""The processes of a running Buildsite, as `manage.py up` starts them (and the browser
tests and `bench/live.py` start the same ones)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from django.conf import settings

# Read once, by `manage.py ensure_admin` before `up`; no long-running process keeps them.
SETUP_ONLY_VARIABLES = ("DJANGO_SUPERUSER_PASSWORD",)


def process_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the processes `up` starts: this one's without the
    SETUP_ONLY_VARIABLES."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in SETUP_ONLY_VARIABLES}


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
