import pytest


@pytest.fixture
def user(db):
    from tests.factories import make_user

    return make_user("alice")


@pytest.fixture
def project(user):
    from tests.factories import make_project

    return make_project(owner=user, slug="acme", name="Acme")


@pytest.fixture
def inline_workers(transactional_db, monkeypatch):
    """django-q2 runs each job inline, in this process, when it is enqueued (after the
    dispatching transaction commits): builds run end to end without a cluster."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    yield


@pytest.fixture
def fast_engine(settings):
    settings.BUILDSITE = {
        **settings.BUILDSITE,
        "RETRY_BACKOFF_SECONDS": 0.0,
        "HEARTBEAT_SECONDS": 0.2,
        "KILL_GRACE_SECONDS": 0.5,
    }
    return settings.BUILDSITE


@pytest.fixture(autouse=True)
def _fresh_version_caches():
    """Pipeline versions are cached per id in the process; tests flush the database and
    reuse ids, which a real deployment never does."""
    from builds.artifacts import artifact_store
    from builds.resolution import forget_versions

    forget_versions()
    artifact_store.cache_clear()
    yield


@pytest.fixture
def unsandboxed(settings, monkeypatch):
    """For tests that talk to a step through a file of the host (a pid file, a flag):
    the sandbox would hide it. Real worker processes inherit the setting."""
    from builds.steps import sandbox

    settings.BUILDSITE = {**settings.BUILDSITE, "SANDBOX": "off"}
    monkeypatch.setenv("BUILDSITE_SANDBOX", "off")
    sandbox.problem.cache_clear()
    yield
    sandbox.problem.cache_clear()
