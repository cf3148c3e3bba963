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
    """The session, with ninja's CSRF check on unsafe methods, for a logged-in session
    only: a request with neither a token nor a session gets 401 (authentication
    required), not a 403 about a CSRF token it has no use for."""

    def __call__(self, request: HttpRequest) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return super().__call__(request)
