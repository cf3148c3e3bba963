"""Prompt templates and runs are indexed as they are written: post_save of the prompt
models, in the saving transaction. The prompts app names no other app (as the build
engine names none: `register_upkeep`, `register_step`), so the hook is Django's signal
rather than a call in prompts.services. Deleting a template or a run deletes its entry
through the foreign key's cascade."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models.signals import post_save

from . import services

log = logging.getLogger(__name__)


def _guarded(index: Any, instance: Any) -> None:
    # A savepoint, and never an exception: a search index problem must not fail the
    # prompt or run being saved (on PostgreSQL it would poison the whole transaction).
    try:
        with transaction.atomic():
            index(instance)
    except DatabaseError:
        log.warning("could not index %r for search", instance, exc_info=True)


def _version_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    _guarded(lambda v: services.index_prompt(prompt=v.prompt), instance)


def _template_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if not created:  # a new template has no version yet: its first version indexes it
        _guarded(lambda p: services.index_prompt(prompt=p), instance)


def _run_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    _guarded(lambda r: services.index_run(run=r), instance)


def connect() -> None:
    from prompts.models import PromptRun, PromptTemplate, PromptVersion

    post_save.connect(_version_saved, sender=PromptVersion, dispatch_uid="search.version")
    post_save.connect(_template_saved, sender=PromptTemplate, dispatch_uid="search.template")
    post_save.connect(_run_saved, sender=PromptRun, dispatch_uid="search.run")
