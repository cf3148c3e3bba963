"""Masking against the accidents it is there for, at the sizes secrets may have."""

import random
import string
import time

from vault.masking import MASK, Masker
from vault.rules import MAX_VALUE_BYTES, masking_terms


def stream(masker: Masker, text: str, size: int) -> str:
    return "".join(masker.feed(text[i : i + size]) for i in range(0, len(text), size)) + (
        masker.flush()
    )


def test_a_large_secret_of_many_lines_does_not_slow_every_log_write():
    """A certificate bundle or a kubeconfig is one value of many masked lines. Each
    write of output compared every position of the text kept back with every line:
    about 4 s per 64 KiB of output for a 64 KiB value, on every log of the project."""
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    lines = ["".join(rng.choice(alphabet) for _ in range(64)) for _ in range(1000)]
    value = "\n".join(lines)
    assert len(value) < MAX_VALUE_BYTES
    masker = Masker(masking_terms(value))
    output = "".join(rng.choice(string.ascii_letters + " \n") for _ in range(128 * 1024))
    leaked = output[:5000] + lines[500] + output[5000:]
    started = time.monotonic()
    shown = stream(masker, leaked, 4096)
    assert time.monotonic() - started < 2.0
    assert lines[500] not in shown and MASK in shown
    assert shown == masker.mask(leaked)


def test_the_usual_accidents_are_masked():
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\nZm9vYmFyYmF6cXV4\n-----END KEY-----\n"
    masker = Masker(
        term for value in ("s3cr3t-token\n", key, "pa ss word\r\n") for term in masking_terms(value)
    )
    printed = (
        "token=s3cr3t-token\n"  # echo adds a newline the stored value did not have
        + key.replace("\n", "\r\n")  # the key printed with CRLF line ends
        + "Zm9vYmFyYmF6cXV4 alone\n"  # one line of it
        + "pass: pa ss word\n"  # stored with a Windows line end
    )
    for size in (1, 3, 7, 4096):
        shown = stream(masker, printed, size)
        assert "s3cr3t" not in shown and "AAAAB3" not in shown and "Zm9v" not in shown
        assert "pa ss word" not in shown
