"""Site-wide views: what Django answers when no URL matches."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found


def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    """JSON under /api/ (clients parse every answer of the API as JSON), the page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"No API endpoint at {request.path!r}."}, status=404)
    response: HttpResponse = page_not_found(request, exception)
    return response
