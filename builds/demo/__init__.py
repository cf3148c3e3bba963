"""The demo project `make run` seeds: pipelines that run offline in a few seconds, a
prompt with a gated label, its dataset and evaluations, and documents that link them.

`content` holds what the project says; `seed` writes it through each app's services."""

from .content import DEMO_PIPELINE, RELEASE_PIPELINE

__all__ = ["DEMO_PIPELINE", "RELEASE_PIPELINE"]
