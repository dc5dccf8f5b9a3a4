"""The server's forward pass against a plain process's: resnet50 POST /predict over HTTP
divided by one in-process inference forward pass of the same weights. Goal <= 1.15.

Both sides see a different 224 x 224 picture on every call; the server's cost includes
HTTP, PNG decoding, preprocessing, the softmax and the JSON answer. Blocks of calls
alternate between the two (bench.common.interleaved_medians).

Run: .venv/bin/python bench/predict.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    distinct_pictures,
    interleaved_medians,
    model_tensor,
    report,
    running_server,
)
from model_registry.config import load_config  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MODELS = f"""[[models]]
name = "resnet50"
architecture = "torchvision:resnet50"
input_size = [224, 224]
mean = {list(MEAN)}
std = {list(STD)}
num_classes = 1000
"""


def anchor_model(models: Path) -> torch.nn.Module:
    """The network the server runs (seeded random weights without a weights cache)."""
    from model_registry.loading import build_model

    return build_model(load_config(models)[0]).module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    pictures = distinct_pictures(2 * 6 * args.rounds)  # every call its own picture
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.toml"
        models.write_text(MODELS, encoding="utf-8")
        model = anchor_model(models)
        spec = load_config(models)[0]
        inputs = [model_tensor(data, spec) for data in pictures]
        print(
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"{torch.get_num_threads()} threads, CPU"
        )
        env = {"LAYERSCOPE_DEVICE": "cpu", "LAYERSCOPE_MODELS": str(models)}
        with running_server(env) as base, httpx.Client(base_url=base, timeout=60) as client:

            def http(i: int) -> None:
                upload = {"image": ("p.png", pictures[i % len(pictures)], "image/png")}
                answer = client.post("/v1/models/resnet50/predict?top_k=5", files=upload)
                answer.raise_for_status()

            def in_process(i: int) -> None:
                with torch.inference_mode():
                    model(inputs[i % len(inputs)])

            served = client.post(
                "/v1/models/resnet50/predict?top_k=1",
                files={"image": ("p.png", pictures[0], "image/png")},
            ).json()["predictions"][0][0]
            with torch.inference_mode():
                local = torch.softmax(model(inputs[0]), 1)[0]
            print(
                f"check: top-1 class {served['class_index']} over HTTP, "
                f"{int(local.argmax())} in-process; probability {served['probability']:.6f} "
                f"vs {float(local.max()):.6f}"
            )
            medians = interleaved_medians(
                {"http": http, "in_process": in_process}, rounds=args.rounds
            )
    report(
        "resnet50 /predict",
        medians["http"],
        medians["in_process"],
        1.15,
        "in-process inference forward pass",
    )


if __name__ == "__main__":
    main()
