import pytest

from .chat_server import ChatServer


@pytest.fixture(autouse=True)
def _private_urls_allowed(settings):
    """The fake model server listens on 127.0.0.1, which only an operator's
    BUILDSITE_ALLOW_PRIVATE_URLS=1 permits; tests of the refusal turn it off again."""
    settings.BUILDSITE = {**settings.BUILDSITE, "ALLOW_PRIVATE_URLS": True}


@pytest.fixture
def env_keys(settings):
    """Set BUILDSITE_PROVIDER_ENV_KEYS as settings parses it: env_keys(NAME=[slugs])."""

    def allow(**names: list[str]) -> None:
        settings.BUILDSITE = {**settings.BUILDSITE, "PROVIDER_ENV_KEYS": names}

    return allow


@pytest.fixture
def chat_server():
    with ChatServer() as server:
        yield server


class FakeSleep:
    """Records the waits a provider asks for instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake_sleep():
    return FakeSleep()


@pytest.fixture
def alice_api(user, project):
    """Alice's API client; she maintains project `acme`."""
    from tests.factories import api_client

    return api_client(user)
