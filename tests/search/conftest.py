import pytest


@pytest.fixture(autouse=True)
def _no_gap_wait(settings):
    """On PostgreSQL the indexer waits for a hole in the event ids to fill; tests run
    one writer at a time, and the sequence keeps counting across tests' truncations."""
    from search import indexing

    settings.BUILDSITE = {**settings.BUILDSITE, "SEARCH_GAP_SECONDS": 0.0}
    indexing.GAPS.clear()
