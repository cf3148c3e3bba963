"""django-q2 entry points of notifications: thin wrappers around the services."""

from __future__ import annotations


def deliver(delivery_id: int) -> str:
    from .delivery import deliver as deliver_once

    return deliver_once(delivery_id=delivery_id)
