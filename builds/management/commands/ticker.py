import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from builds.upkeep import UpkeepThread, release_upkeep_lease


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = (
        "Upkeep outside a worker cluster (every cluster already does it, one at a time): "
        "lost workers, due retries, deadlines, dispatch, cache, retention."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        # The same lease as the clusters' upkeep, so exactly one of them acts at a time.
        upkeep = UpkeepThread()
        if once:
            upkeep.round()
            release_upkeep_lease(holder=upkeep.holder)  # a cluster need not wait for it
            return
        signal.signal(signal.SIGTERM, lambda *a: upkeep.stopped.set())
        signal.signal(signal.SIGINT, lambda *a: upkeep.stopped.set())
        upkeep.run()
