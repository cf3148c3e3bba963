import signal

from django.core.management.base import BaseCommand

from builds.upkeep import UpkeepThread


class Command(BaseCommand):
    help = (
        "Upkeep outside a worker cluster (every cluster already does it, one at a time): "
        "lost workers, due retries, deadlines, dispatch, cache, retention."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true")

    def handle(self, *args, once=False, **options):
        # The same lease as the clusters' upkeep, so exactly one of them acts at a time.
        upkeep = UpkeepThread()
        if once:
            upkeep.round()
            return
        signal.signal(signal.SIGTERM, lambda *a: upkeep.stopped.set())
        signal.signal(signal.SIGINT, lambda *a: upkeep.stopped.set())
        upkeep.run()
