"""WebSocket routes (the live UI issue fills these in)."""

websocket_urlpatterns: list = []
