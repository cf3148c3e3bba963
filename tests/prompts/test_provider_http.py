"""The OpenAI-compatible provider against a real HTTP server on 127.0.0.1."""

import socket
import time

import pytest

from prompts.providers import ChatRequest, OpenAICompatibleProvider, ProviderError

from .chat_server import Reply, completion

REQUEST = ChatRequest(messages=[{"role": "user", "content": "Say hi"}], model="m1", timeout=10)


def provider(server, fake_sleep, **kwargs):
    return OpenAICompatibleProvider(
        base_url=server.base_url,
        api_key=kwargs.pop("api_key", "sk-test-123"),
        sleep=fake_sleep,
        allow_private=True,  # the test server is on 127.0.0.1
        **kwargs,
    )


def test_success_sends_the_protocol_and_reads_usage(chat_server, fake_sleep):
    chat_server.reply(Reply(body=completion("hi there", prompt_tokens=5, completion_tokens=2)))
    result = provider(chat_server, fake_sleep).complete(REQUEST)
    assert (result.text, result.tokens_in, result.tokens_out) == ("hi there", 5, 2)
    sent = chat_server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-test-123"
    assert sent["json"]["model"] == "m1"
    assert sent["json"]["messages"] == REQUEST.messages
    assert fake_sleep.calls == []


def test_429_honours_retry_after_then_succeeds(chat_server, fake_sleep):
    chat_server.reply(
        Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}),
        Reply(body=completion("ok")),
    )
    result = provider(chat_server, fake_sleep).complete(REQUEST)
    assert result.text == "ok"
    assert result.retries == 1
    assert fake_sleep.calls == [3.0]
    assert len(chat_server.requests) == 2


def test_429_asking_for_too_long_a_wait_fails_at_once(chat_server, fake_sleep):
    chat_server.reply(Reply(429, {"error": {}}, {"Retry-After": "3600"}))
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep, max_retry_after=30).complete(REQUEST)
    assert info.value.kind == "rate_limited"
    assert "3600" in str(info.value) and "cap" in str(info.value)
    assert fake_sleep.calls == []


def test_500_backs_off_exponentially_up_to_the_retry_cap(chat_server, fake_sleep):
    chat_server.reply(Reply(500, {"error": {"message": "boom"}}))
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep, max_retries=3, backoff=0.5).complete(REQUEST)
    assert info.value.kind == "server"
    assert "HTTP 500" in str(info.value) and "gave up after 4 attempts" in str(info.value)
    assert fake_sleep.calls == [0.5, 1.0, 2.0]
    assert len(chat_server.requests) == 4


def test_503_then_success(chat_server, fake_sleep):
    chat_server.reply(Reply(503, "unavailable"), Reply(body=completion("fine")))
    assert provider(chat_server, fake_sleep).complete(REQUEST).text == "fine"
    assert fake_sleep.calls == [0.5]


def test_read_timeout_ends_in_an_error_not_a_hang(chat_server, fake_sleep):
    chat_server.reply(Reply(body=completion("late"), delay=3))
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep, max_retries=0).complete(
            ChatRequest(messages=REQUEST.messages, model="m1", timeout=0.5)
        )
    assert time.monotonic() - started < 2.5
    assert info.value.kind == "timeout"
    assert "read timeout" in str(info.value)


def test_retries_never_pass_the_calls_overall_time_limit(chat_server, fake_sleep):
    chat_server.reply(Reply(body=completion("late"), delay=2))
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep, max_retries=5).complete(
            ChatRequest(messages=REQUEST.messages, model="m1", timeout=0.6)
        )
    assert time.monotonic() - started < 1.8
    assert "time limit" in str(info.value)
    assert len(chat_server.requests) == 1
    assert fake_sleep.calls == []


def test_invalid_json_body_is_a_malformed_error_without_retry(chat_server, fake_sleep):
    chat_server.reply(Reply(200, "<html>not json</html>"))
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep).complete(REQUEST)
    assert info.value.kind == "malformed"
    assert "malformed response body" in str(info.value)
    assert len(chat_server.requests) == 1


def test_json_without_choices_is_malformed(chat_server, fake_sleep):
    chat_server.reply(Reply(200, {"object": "chat.completion", "choices": []}))
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep).complete(REQUEST)
    assert info.value.kind == "malformed"


def test_client_errors_are_not_retried_and_the_key_is_scrubbed(chat_server, fake_sleep):
    chat_server.reply(Reply(401, {"error": {"message": "Incorrect API key provided: sk-test-123"}}))
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep).complete(REQUEST)
    assert info.value.kind == "http"
    assert "HTTP 401" in str(info.value)
    assert "sk-test-123" not in str(info.value) and "sk-test-123" not in info.value.raw
    assert "[redacted]" in str(info.value)
    assert len(chat_server.requests) == 1


def test_redirects_are_not_followed(chat_server, fake_sleep):
    chat_server.reply(Reply(302, "", {"Location": "http://169.254.169.254/latest/meta-data/"}))
    with pytest.raises(ProviderError) as info:
        provider(chat_server, fake_sleep).complete(REQUEST)
    assert "HTTP 302" in str(info.value)


def test_connection_refused_is_a_clear_error(fake_sleep):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = OpenAICompatibleProvider(
        base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, sleep=fake_sleep, allow_private=True
    )
    with pytest.raises(ProviderError) as info:
        client.complete(REQUEST)
    assert info.value.kind == "connect"
    assert "cannot connect" in str(info.value)
    assert fake_sleep.calls == [0.5]


def test_metadata_endpoint_is_refused_before_any_request(fake_sleep):
    client = OpenAICompatibleProvider(base_url="http://169.254.169.254/v1", sleep=fake_sleep)
    with pytest.raises(ProviderError) as info:
        client.complete(REQUEST)
    assert info.value.kind == "config"
    assert "link-local" in str(info.value)
