import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from builds.maintenance import tick


class Command(BaseCommand):
    help = "Run upkeep every tick: lost workers, retries, deadlines, dispatch, cache, retention."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true")

    def handle(self, *args, once=False, **options):
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        interval = settings.BUILDSITE["TICK_SECONDS"]
        while not stop:
            close_old_connections()
            try:
                tick()
            except Exception as exc:  # keep ticking through a passing database error
                self.stderr.write(f"tick failed: {exc}")
            if once:
                return
            time.sleep(interval)
