"""`layerscope serve`: start the HTTP server; `layerscope samples`: write sample pictures.

A bad models file, weights file or setting ends start-up with one line on stderr and exit
code 2, whether it is found before the server binds its port (settings, the models file)
or while the models load (architectures, weights). `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
import traceback

# Read by torch's OpenMP runtime (libgomp) when torch loads, so it is set before any import
# that loads torch. After a parallel region, libgomp's idle worker spins (default 300,000
# turns) before it sleeps. In a plain script the next region comes at once;
# in the server, decoding, encoding and HTTP come next and the spinner takes one of their
# cores. 30,000 turns keep back-to-back kernels hot and free the core ten times sooner.
# An operator's own value wins. See README, "Execution".
os.environ.setdefault("GOMP_SPINCOUNT", "30000")

from pydantic import ValidationError  # noqa: E402

from model_registry.errors import ConfigError  # noqa: E402

START_UP_FAILED = 2


def _parser() -> argparse.ArgumentParser:
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
    serve.add_argument(
        "--debug", action="store_true", help="on a start-up failure, print the traceback too"
    )
    samples = commands.add_parser(
        "samples", help="write sample pictures (2 photos, 10 digits) to a folder"
    )
    samples.add_argument("folder", nargs="?", default="samples")
    return parser


def describe(exc: BaseException, models: object = None) -> str:
    """One line for a start-up failure: the file or setting, the entry, the field, the fix."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        value = f" (got {first['input']!r})" if "input" in first else ""
        return f"setting LAYERSCOPE_{name.upper()}: {first['msg']}{value}"
    text = " ".join(str(exc).split())
    if not isinstance(exc, ConfigError):  # not foreseen: its type says what it is
        text = f"start-up failed: {type(exc).__name__}" + (f": {text}" if text else "")
    if models is not None and text.startswith("model "):
        text = f"models file {models}: {text}"
    return text


class _StartUpLog:
    """Holds log records back until the models are loaded: a failed start-up prints one
    line, not the server's progress and a traceback (unless --debug)."""

    def __init__(self) -> None:
        self.root = logging.getLogger()
        self.handlers = list(self.root.handlers)
        self.buffer = logging.handlers.MemoryHandler(
            capacity=100_000, flushLevel=logging.CRITICAL + 1
        )
        self.root.handlers[:] = [self.buffer]

    def release(self, *, keep: bool) -> None:
        self.root.handlers[:] = self.handlers
        if keep:
            for record in self.buffer.buffer:
                for handler in self.handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)
        self.buffer.buffer.clear()


def _serve(args: argparse.Namespace, serving: list[bool]) -> int:
    """Start the server; `serving` gets True once every model is loaded (after that, an
    exception is a crash, not a start-up failure)."""
    import uvicorn

    from model_registry.config import load_config, load_datasets
    from model_registry.registry import ModelRegistry, resolve_device
    from service.app import create_app, load_registry
    from service.logging_setup import configure_logging
    from service.middleware.tenants import load_keys
    from service.settings import Settings

    settings = Settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if settings.models is not None:
        load_config(settings.models)  # fail before binding the port
        load_datasets(settings.models)  # a missing or empty dataset folder too
    resolve_device(settings.device)  # likewise: the lifespan resolves it before loading
    load_keys(settings)  # and a bad API key setting, never served without auth
    log = _StartUpLog()
    failures: list[BaseException] = []

    def loader(current: Settings) -> ModelRegistry:
        try:
            registry = load_registry(current)
        except BaseException as exc:
            failures.append(exc)
            raise
        serving.append(True)
        log.release(keep=True)
        return registry

    try:
        uvicorn.run(
            create_app(settings, registry_loader=loader),
            host=settings.host,
            port=settings.port,
            log_config=None,  # keep our JSON handlers
            log_level=settings.log_level,
            timeout_graceful_shutdown=int(settings.drain_timeout_s),
        )
    except SystemExit:
        if not failures:
            raise
    finally:
        log.release(keep=args.debug or not failures)
    if failures:
        raise failures[0]
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "samples":
        from pathlib import Path

        from service.samples import write_samples

        for path in write_samples(Path(args.folder)):
            print(path)
        return 0
    serving: list[bool] = []
    try:
        return _serve(args, serving)
    except Exception as exc:
        if serving:
            raise
        if args.debug:
            traceback.print_exception(exc)
        models = None
        if not isinstance(exc, ValidationError):
            from service.settings import Settings

            models = Settings().models
        print(f"layerscope: {describe(exc, models)}", file=sys.stderr)
        return START_UP_FAILED


if __name__ == "__main__":
    sys.exit(main())
