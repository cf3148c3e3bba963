"""Encryption of what the server stores but must read back: provider API keys and
project secrets (Fernet: AES-128-CBC + HMAC).

The key comes from BUILDSITE_ENCRYPTION_KEY (a Fernet key, or any passphrase, which is
hashed into one); without it, from settings.SECRET_KEY. Rotating it makes stored values
unreadable: whatever needs one then fails with a clear error and a maintainer sets it
again.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretUnreadable(Exception):
    pass


def _fernet() -> Fernet:
    raw = os.environ.get("BUILDSITE_ENCRYPTION_KEY", "")
    if raw:
        try:
            return Fernet(raw.encode())
        except ValueError:
            material = b"buildsite-passphrase:" + raw.encode()
    else:
        # The label predates project secrets; changing it would make every value stored
        # so far unreadable.
        material = b"buildsite-provider-keys:" + settings.SECRET_KEY.encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material).digest()))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "a stored secret cannot be decrypted (the encryption key changed); "
            "a maintainer must set it again"
        ) from None
