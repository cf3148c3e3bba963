"""django-q2's `qcluster`, stopping within seconds of SIGTERM or SIGINT.

django-q2's own stop lets every worker finish its job and then run the jobs already
pulled into the cluster's queue, so a cluster running a long step did not stop until
the step ended (or the service manager's SIGKILL came). Here the signal first sets
`builds.cluster.stopping` (running steps are killed and their attempts returned for
retry, pulled jobs are handed back), then django-q2's stop runs as usual; whatever is
still alive after STOP_SECONDS is killed, and the leases recover it.
"""

import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from builds import pusher
from builds.cluster import prepare_stopping, set_stopping
from buildsite.broker import prepare_wakeup

STOP_SECONDS = 8.0


class Command(DjangoQCommand):  # type: ignore[misc]  # django-q2 is untyped (Any base)
    help = "Start a worker cluster (django-q2); SIGTERM or SIGINT stops it within seconds."

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        prepare_stopping()
        prepare_wakeup()
        pusher.prepare()
        cluster = Cluster()
        signalled: list[float] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not signalled:
                signalled.append(time.monotonic())
                set_stopping()
                if cluster.stop_event is not None:
                    cluster.stop_event.set()  # django-q2's stop, without blocking here

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        cluster.start()
        if options.get("run_once") and not signalled:
            on_signal(signal.SIGTERM, None)
        elif signalled:  # the signal came while the cluster was starting
            cluster.stop_event.set()
        while cluster.sentinel.is_alive():
            if signalled and time.monotonic() - signalled[0] > STOP_SECONDS:
                self.stderr.write("cluster did not stop in time: killing what is left")
                _kill_tree(cluster.sentinel.pid)
                break
            cluster.sentinel.join(timeout=0.2)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (the sentinel, its workers, monitor, pusher)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            os.kill(current, signal.SIGKILL)
        except ProcessLookupError:
            continue
