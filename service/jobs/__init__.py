"""Jobs: long requests run in the background, their records, and the shared Redis queue.

A job replays its request through the ASGI app (`replay`), so this package may know
starlette; it runs on the model's device worker (`on_device`) and never imports routes.
Dependency direction: routes -> jobs -> workers -> engine -> model_registry.
"""
