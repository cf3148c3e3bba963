"""WebSocket routes. The paths are a contract with browsers and API clients."""

from django.urls import path

from tasks.consumers import BuildEventsConsumer, ProjectEventsConsumer

websocket_urlpatterns = [
    path("ws/projects/<slug:slug>/", ProjectEventsConsumer.as_asgi()),
    path("ws/builds/<int:build_id>/", BuildEventsConsumer.as_asgi()),
]
