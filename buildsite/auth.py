"""API authentication: bearer tokens for scripts, the Django session for the browser."""

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from .selectors import user_for_token


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


class BrowserSessionAuth(SessionAuth):
    """Session auth (with ninja's CSRF check on unsafe methods)."""


api_auth = [TokenAuth(), BrowserSessionAuth()]
