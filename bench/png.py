"""The PNG writer (`model_registry/fast_paths/png.py`, ISA-L deflate) against Pillow's
encoder at compress_level=1 (what `LAYERSCOPE_FAST_PNG=false` uses), on the pictures the
service answers with.

Pictures: a photo at model input size, a feature-map grid (16 x 16 tiles of a colormapped
resnet18 layer, 1,024 x 1,024 RGB), a heatmap panel and a grey map. Each is encoded both
ways; the median time of each, the ratio and the sizes are printed.

Run: .venv/bin/python bench/png.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from matplotlib import colormaps
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median_seconds, photo_png  # noqa: E402
from service.engine.encode import png_bytes as fast_png_bytes  # noqa: E402


def pillow_png(pixels: np.ndarray, level: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def pictures() -> dict[str, np.ndarray]:
    photo, _ = photo_png((224, 224))
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.from_numpy(np.asarray(photo, np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        maps = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))[0]  # [64, 56, 56]
    tiles = maps[:16].repeat(16, 1, 1).numpy()  # 256 tiles
    tiles = (tiles - tiles.min()) / (tiles.max() - tiles.min() + 1e-7)
    side = 64
    grid = np.zeros((16 * side, 16 * side), np.float32)
    for i, tile in enumerate(tiles):
        big = np.asarray(Image.fromarray(tile).resize((side, side), Image.Resampling.BILINEAR))
        row, col = divmod(i, 16)
        grid[row * side : (row + 1) * side, col * side : (col + 1) * side] = big
    colored = (colormaps["viridis"](grid)[..., :3] * 255).astype(np.uint8)
    heat = (colormaps["jet"](grid[:224, :448])[..., :3] * 255).astype(np.uint8)
    panel = (0.5 * heat + 0.5 * np.concatenate([np.asarray(photo)] * 2, axis=1)).astype(np.uint8)
    return {
        "photo 224x224 RGB": np.asarray(photo),
        "grid 1024x1024 RGB": colored,
        "panel 224x448 RGB": panel,
        "map 224x224 grey": (grid[:224, :224] * 255).astype(np.uint8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, Pillow {Image.__version__}, threads {torch.get_num_threads()}"
    )
    for name, pixels in pictures().items():
        ours = median_seconds(lambda p=pixels: fast_png_bytes(p), repeat=args.repeat)
        pillow = median_seconds(lambda p=pixels: pillow_png(p), repeat=args.repeat)
        same = np.array_equal(np.asarray(Image.open(io.BytesIO(fast_png_bytes(pixels)))), pixels)
        print(
            f"{name}: writer {ours * 1000:.2f} ms, {len(fast_png_bytes(pixels)) / 1024:.0f} KiB; "
            f"Pillow level 1 {pillow * 1000:.2f} ms, {len(pillow_png(pixels)) / 1024:.0f} KiB; "
            f"Pillow / writer = {pillow / ours:.2f}; pixels equal: {same}"
        )


if __name__ == "__main__":
    main()
