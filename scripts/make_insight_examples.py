"""Write the README's model-insight pictures to docs/images/ from the running API.

Every picture comes from real HTTP calls (ASGI, in process) to the endpoints, on the
built-in `digits` model and scikit-learn's sample photos; nothing is drawn by hand.
Run from the repository root:

    .venv/bin/python scripts/make_insight_examples.py [output folder]
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from model_registry.builtin import digits  # noqa: E402
from service.app import create_app  # noqa: E402
from service.engine.images import to_model_image  # noqa: E402
from service.samples import photos  # noqa: E402
from service.settings import Settings  # noqa: E402

MODELS = f"""
[[models]]
name = "digits"
architecture = "builtin:digits"
weights = "{digits.WEIGHTS_PATH.as_posix()}"
input_size = [32, 32]
mean = [0.5]
std = [0.5]
num_classes = 10
labels = {list(digits.LABELS)!r}
"""
MAX_BYTES = 200_000


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _ok(response) -> bytes:  # noqa: ANN001 - httpx response
    if response.status_code != 200:
        raise SystemExit(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response.content


def _strip(
    tiles: list[tuple[str, Image.Image]], *, scale: int = 4, columns: int | None = None
) -> Image.Image:
    """Titled tiles side by side (wrapped after `columns`), enlarged with nearest neighbours."""
    font = ImageFont.load_default(size=12)
    columns = columns or len(tiles)
    width = max(t.width for _, t in tiles) * scale
    height = max(t.height for _, t in tiles) * scale
    rows = -(-len(tiles) // columns)
    canvas = Image.new(
        "RGB", (columns * (width + 8) + 8, rows * (height + 26) + 8), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for i, (title, tile) in enumerate(tiles):
        left, top = 8 + (i % columns) * (width + 8), 8 + (i // columns) * (height + 26)
        draw.text((left, top), title, fill=(30, 30, 30), font=font)
        canvas.paste(
            tile.convert("RGB").resize((width, height), Image.Resampling.NEAREST), (left, top + 18)
        )
    return canvas


def _save(folder: Path, name: str, data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    data = _png(image)  # re-encoded with optimize=True to keep the repository small
    if len(data) > MAX_BYTES:
        raise SystemExit(f"{name} is {len(data)} bytes, over {MAX_BYTES}")
    (folder / name).write_bytes(data)
    print(f"{folder / name}: {image.width}x{image.height}, {len(data) // 1024} KB")


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    china = _jpeg(photos()["china.jpg"])
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(MODELS, encoding="utf-8")
        settings = Settings(models=models, device="cpu", torch_threads=1, max_embedding_images=2000)
        with TestClient(create_app(settings)) as api:
            base = "/v1/models/digits"

            filters = _ok(
                api.get(f"{base}/layers/conv1/filters?channels=all&upsample=48&columns=8")
            )
            _save(folder, "insight-filters.png", filters)

            tiles = []
            for layer, channel in (("relu2", 0), ("relu2", 17), ("relu3", 3), ("relu3", 33)):
                data = _ok(api.post(f"{base}/layers/{layer}/maximize?channel={channel}&steps=256"))
                tiles.append((f"{layer} ch {channel}", Image.open(io.BytesIO(data))))
            for label in range(10):
                data = _ok(api.post(f"{base}/layers/fc/maximize?channel={label}&steps=256"))
                tiles.append((f"class {label}", Image.open(io.BytesIO(data))))
            _save(folder, "insight-maximize.png", _png(_strip(tiles, columns=7)))

            upload = [("image", ("china.jpg", china, "image/jpeg"))]
            spec = api.app.state.registry.get("digits").spec
            original, _ = to_model_image(photos()["china.jpg"], spec)  # what the model is fed
            tiles = [("input (32x32)", original)]
            for layer in ("conv1", "relu2", "relu3", "fc"):
                data = _ok(api.post(f"{base}/layers/{layer}/invert?steps=300", files=upload))
                tiles.append((f"from {layer}", Image.open(io.BytesIO(data))))
            _save(folder, "insight-invert.png", _png(_strip(tiles)))

            stats = _ok(api.post(f"{base}/stats?format=png", files=upload))
            _save(folder, "insight-stats.png", stats)

            from sklearn.datasets import load_digits

            data = load_digits()
            uploads = [
                ("image", (f"{i}.png", _png(digits.digit_image(data.images[i])), "image/png"))
                for i in range(600)
            ]
            labels = ",".join(str(int(t)) for t in data.target[:600])
            embedding = _ok(
                api.post(
                    f"{base}/embedding?method=tsne&format=png&async=false",
                    files=uploads,
                    data={"labels": labels},
                )
            )
            _save(folder, "insight-embedding.png", embedding)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images")
