import pytest

from .chat_server import ChatServer


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
