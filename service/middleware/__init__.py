"""Pure ASGI middleware: request ids and access metrics, API key."""
