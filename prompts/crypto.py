"""Encryption of stored provider API keys (Fernet: AES-128-CBC + HMAC).

The key comes from BUILDSITE_ENCRYPTION_KEY (a Fernet key, or any passphrase, which is
hashed into one); without it, from settings.SECRET_KEY. Rotating it makes stored keys
unreadable: runs then fail with a clear error and a maintainer sets the key again.
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
        material = b"buildsite-provider-keys:" + settings.SECRET_KEY.encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material).digest()))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "the stored API key cannot be decrypted (the encryption key changed); "
            "a maintainer must set it again"
        ) from None
