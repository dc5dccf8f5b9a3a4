"""Request options and response bodies of the HTTP API (pydantic only, no torch)."""
