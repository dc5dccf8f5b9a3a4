"""`layerscope serve`: start the HTTP server."""

from __future__ import annotations

import argparse
import sys

from model_registry.errors import ConfigError
from service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="layerscope", description="What a convolutional network sees, over HTTP."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server")
    serve.add_argument(
        "--host", default=None, help="bind address (default 127.0.0.1, or LAYERSCOPE_HOST)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port (default 8000, or LAYERSCOPE_PORT)"
    )
    samples = commands.add_parser(
        "samples", help="write sample pictures (2 photos, 10 digits) to a folder"
    )
    samples.add_argument("folder", nargs="?", default="samples")
    args = parser.parse_args(argv)

    if args.command == "samples":
        from pathlib import Path

        from service.samples import write_samples

        for path in write_samples(Path(args.folder)):
            print(path)
        return 0

    import uvicorn

    from model_registry.config import load_config
    from service.app import create_app
    from service.logging_setup import configure_logging

    settings = Settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    try:
        if settings.models is not None:
            load_config(settings.models)  # fail before binding the port, with a one-line message
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,  # keep our JSON handlers
            log_level=settings.log_level,
            timeout_graceful_shutdown=int(settings.drain_timeout_s),
        )
    except ConfigError as exc:
        print(f"layerscope: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
