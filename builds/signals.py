"""What other apps may hear of the build engine without the engine naming them."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

# Sent after the commit of a change of a build's state, with `build` (its row as of the
# change), `old` and `new` (BuildState values; `old` is "" for a new build). Receivers
# run in the process that made the change, so they should only enqueue work.
build_state_changed = Signal()


def send_build_state_changed(*, build: Any, old: str, new: str) -> None:
    transaction.on_commit(
        lambda: build_state_changed.send(sender=type(build), build=build, old=old, new=new)
    )
