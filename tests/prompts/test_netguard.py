"""The outbound URL guard: address classes, IPv4 hidden in IPv6, DNS, and that a call
connects to the address that was checked."""

import httpx
import pytest

from buildsite.errors import InvalidInput
from prompts.netguard import PRIVATE_REFUSED, REFUSED, check, check_url, refusal
from prompts.providers import ChatRequest, OpenAICompatibleProvider, ProviderError

from .chat_server import Reply, completion

REQUEST = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m", timeout=10)


def resolver_to(*addresses):
    return lambda host, port: list(addresses)


ALWAYS_REFUSED = [
    "169.254.169.254",
    "0.0.0.0",
    "::",
    "fe80::1",
    "100.100.100.200",
    "fd00:ec2::254",
    "224.0.0.1",
    "255.255.255.255",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:0:a9fe:a9fe",  # IPv4-translated
    "::a9fe:a9fe",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe",  # NAT64
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
    "2002:a9fe:a9fe::1",  # 6to4
    "2001:0:808:808::5601:5601",  # Teredo, client 169.254.169.254
]
PRIVATE = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "198.18.0.1",
    "192.0.2.1",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 10.0.0.1
    "2002:7f00:1::1",  # 6to4 127.0.0.1
    "2001:0:808:808::f5ff:fffe",  # Teredo, client 10.0.0.1
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "100.128.0.1",  # just past CGNAT
    "172.32.0.1",  # just past 172.16/12
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 to 8.8.8.8
    "2002:808:808::1",
    "2001:0:808:808::f7f7:fbfb",  # Teredo, client 8.8.4.4
]


def url_of(address: str) -> str:
    return f"http://[{address}]:8000/v1" if ":" in address else f"http://{address}:8000/v1"


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_link_local_and_metadata_addresses_are_always_refused(address):
    assert refusal(address) == REFUSED
    assert refusal(address, allow_private=True) == REFUSED
    with pytest.raises(InvalidInput) as info:
        check_url(url_of(address), allow_private=True)
    assert "link-local or cloud metadata" in info.value.problems[0].message


@pytest.mark.parametrize("address", PRIVATE)
def test_loopback_and_private_addresses_need_the_operators_permission(address):
    assert refusal(address) == PRIVATE_REFUSED
    with pytest.raises(InvalidInput) as info:
        check_url(url_of(address))
    assert "BUILDSITE_ALLOW_PRIVATE_URLS=1" in info.value.problems[0].message
    assert refusal(address, allow_private=True) is None
    assert check_url(url_of(address), allow_private=True) == url_of(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert refusal(address) is None
    assert check_url(url_of(address)) == url_of(address)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2852039166/", REFUSED),  # 169.254.169.254 as one number
        ("http://0xa9fea9fe/", REFUSED),
        ("http://0251.0376.0251.0376/", REFUSED),  # octal
        ("http://169.254.43518/", REFUSED),
        ("http://0x7f000001/", PRIVATE_REFUSED),
        ("http://127.1/", PRIVATE_REFUSED),
        ("http://[fe80::1%25eth0]/", REFUSED),  # with a zone id
    ],
)
def test_numeric_host_spellings_are_resolved_before_the_check(url, reason):
    with pytest.raises(InvalidInput) as info:
        check_url(url)  # the system resolver reads numbers without the network
    assert reason in info.value.problems[0].message


@pytest.mark.parametrize(
    "url",
    [
        "http://metadata.google.internal/v1",
        "http://METADATA.google.internal./v1",
        "ftp://example.com/v1",
        "http://user:pw@example.com/v1",
        "http://example.com/v1?x=1",
        "http://example.com:99999/v1",
        "not a url",
    ],
)
def test_malformed_and_metadata_urls_are_refused(url):
    with pytest.raises(InvalidInput):
        check_url(url, allow_private=True, resolver=resolver_to("93.184.216.34"))


def test_every_address_of_a_name_is_checked_and_none_is_shown():
    with pytest.raises(InvalidInput) as info:
        check_url(
            "https://innocent.example/v1", resolver=resolver_to("93.184.216.34", "169.254.169.254")
        )
    message = info.value.problems[0].message
    assert message.startswith("'innocent.example' resolves to a link-local")
    assert "169.254" not in message  # the check is no way to map internal DNS
    with pytest.raises(InvalidInput):
        check_url("http://db.internal/v1", resolver=resolver_to("93.184.216.34", "10.0.0.5"))
    with pytest.raises(InvalidInput):
        check_url("http://nothing.example/v1", resolver=resolver_to())


def test_a_resolved_url_is_pinned_to_its_checked_addresses():
    target = check(
        "https://API.example.com:8443/v1/",
        resolver=resolver_to("2606:4700::1", "93.184.216.34"),
    )
    assert target.url == "https://API.example.com:8443/v1"
    assert (target.hostname, target.host_header) == ("api.example.com", "API.example.com:8443")
    assert target.addresses == ("2606:4700::1", "93.184.216.34")
    assert target.pinned_url("2606:4700::1") == "https://[2606:4700::1]:8443/v1"
    assert target.pinned_url("93.184.216.34") == "https://93.184.216.34:8443/v1"


# --- at call time -------------------------------------------------------------------------
def test_a_name_rebound_to_metadata_after_saving_is_refused_before_any_request(fake_sleep):
    answers = [["93.184.216.34"], ["169.254.169.254"]]
    resolver = lambda host, port: answers.pop(0)  # noqa: E731
    assert check_url("http://rebind.example/v1", resolver=resolver)  # at save time
    sent = []
    client = OpenAICompatibleProvider(
        base_url="http://rebind.example/v1",
        resolver=resolver,
        sleep=fake_sleep,
        transport=httpx.MockTransport(lambda request: sent.append(request)),
    )
    with pytest.raises(ProviderError) as info:
        client.complete(REQUEST)
    assert info.value.kind == "config" and "link-local" in str(info.value)
    assert sent == []


def test_private_addresses_are_refused_at_call_time_without_permission(chat_server, fake_sleep):
    client = OpenAICompatibleProvider(base_url=chat_server.base_url, sleep=fake_sleep)
    with pytest.raises(ProviderError) as info:
        client.complete(REQUEST)
    assert info.value.kind == "config" and "BUILDSITE_ALLOW_PRIVATE_URLS" in str(info.value)
    assert chat_server.requests == []


def test_the_call_connects_to_the_checked_address(chat_server, fake_sleep):
    """`model.test` resolves nowhere: the request can only succeed by connecting to the
    address the check returned, with the configured name as Host."""
    chat_server.reply(Reply(body=completion("pinned")))
    port = chat_server.httpd.server_address[1]
    client = OpenAICompatibleProvider(
        base_url=f"http://model.test:{port}/v1",
        resolver=resolver_to("127.0.0.1"),
        allow_private=True,
        sleep=fake_sleep,
    )
    assert client.complete(REQUEST).text == "pinned"
    assert chat_server.requests[0]["headers"]["Host"] == f"model.test:{port}"


def test_retries_move_on_to_the_next_checked_address(chat_server, fake_sleep):
    chat_server.reply(Reply(body=completion("second address")))
    port = chat_server.httpd.server_address[1]
    client = OpenAICompatibleProvider(
        base_url=f"http://model.test:{port}/v1",
        resolver=resolver_to("127.0.0.2", "127.0.0.1"),  # nothing listens on 127.0.0.2
        allow_private=True,
        max_retries=1,
        sleep=fake_sleep,
    )
    assert client.complete(REQUEST).text == "second address"
    assert fake_sleep.calls == [0.5]


def test_tls_keeps_the_configured_name_for_sni_and_certificates(fake_sleep):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion("ok"))

    client = OpenAICompatibleProvider(
        base_url="https://api.example.com/v1",
        resolver=resolver_to("2606:4700::1"),
        sleep=fake_sleep,
        transport=httpx.MockTransport(answer),
    )
    assert client.complete(REQUEST).text == "ok"
    assert str(seen[0].url) == "https://[2606:4700::1]/v1/chat/completions"
    assert seen[0].headers["Host"] == "api.example.com"
    assert seen[0].extensions["sni_hostname"] == "api.example.com"


def test_redirects_are_not_followed(fake_sleep):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(307, headers={"Location": "http://169.254.169.254/latest/"})

    client = OpenAICompatibleProvider(
        base_url="https://api.example.com/v1",
        resolver=resolver_to("93.184.216.34"),
        sleep=fake_sleep,
        transport=httpx.MockTransport(answer),
    )
    with pytest.raises(ProviderError) as info:
        client.complete(REQUEST)
    assert info.value.kind == "http" and "HTTP 307" in str(info.value)
    assert len(seen) == 1
