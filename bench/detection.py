"""Grad-CAM of one detection box over HTTP against pytorch-grad-cam in-process: POST /cam
(detection=0, npy) on fasterrcnn_mobilenet_v3_large_320_fpn divided by pytorch-grad-cam's
GradCAM with FasterRCNNBoxScoreTarget on the same weights, layer and box. Goal <= 0.5.

Both sides see a different 320 x 320 picture on every call. The server's cost includes
HTTP, PNG decoding, preprocessing, the forward pass that finds the box and the npy answer;
pytorch-grad-cam is handed the box (found beforehand, outside the timing). Weights are
seeded and random with class scores that differ (tests/dense_models.py), as no weights are
downloaded. Blocks of calls alternate between the two (bench.common.interleaved_medians).

Run: .venv/bin/python bench/detection.py [--rounds N]
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    distinct_pictures,
    interleaved_medians,
    model_tensor,
    report,
    running_server,
)
from model_registry.config import load_config  # noqa: E402
from tests.dense_models import DET_LABELS, seeded_detector  # noqa: E402

LAYER = "backbone.fpn.layer_blocks.0"
SIZE = 320


def write_models(folder: Path) -> Path:
    weights = folder / "det.safetensors"
    state = {k: v.contiguous() for k, v in seeded_detector().state_dict().items()}
    save_file(state, str(weights))
    models = folder / "models.toml"
    models.write_text(
        f"""[[models]]
name = "det"
architecture = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
weights = "{weights}"
input_size = [{SIZE}, {SIZE}]
num_classes = {len(DET_LABELS)}
options = {{ box_detections_per_img = 8 }}
""",
        encoding="utf-8",
    )
    return models


def reference(models: Path):
    """pytorch-grad-cam's GradCAM on a trainable copy of the served network."""
    from pytorch_grad_cam import GradCAM

    from model_registry.loading import build_model

    module = copy.deepcopy(build_model(load_config(models)[0]).module)
    for param in module.parameters():
        param.requires_grad_(True)
    layer = dict(module.named_modules())[LAYER]
    return module, GradCAM(model=module, target_layers=[layer])


def top_box(module: torch.nn.Module, batch: torch.Tensor) -> tuple[int, np.ndarray]:
    with torch.inference_mode():
        found = module(batch)[0]
    return int(found["labels"][0]), found["boxes"][0].numpy()


def main() -> None:
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    pictures = distinct_pictures(24, size=SIZE)
    with tempfile.TemporaryDirectory() as folder:
        models = write_models(Path(folder))
        spec = load_config(models)[0]
        module, cam = reference(models)
        inputs = [model_tensor(data, spec) for data in pictures]
        boxes = [top_box(module, x) for x in inputs]
        print(
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"{torch.get_num_threads()} threads, CPU"
        )
        env = {"LAYERSCOPE_DEVICE": "cpu", "LAYERSCOPE_MODELS": str(models)}
        url = f"/v1/models/det/cam?layer={LAYER}&detection=0&format=npy&normalize=true"
        with running_server(env) as base, httpx.Client(base_url=base, timeout=120) as client:

            def http(i: int) -> np.ndarray:
                upload = {"image": ("p.png", pictures[i % len(pictures)], "image/png")}
                answer = client.post(url, files=upload)
                answer.raise_for_status()
                return np.load(io.BytesIO(answer.content))

            def in_process(i: int) -> np.ndarray:
                label, box = boxes[i % len(boxes)]
                target = FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box])
                return cam(input_tensor=inputs[i % len(inputs)].clone(), targets=[target])

            ours, theirs = http(0)[0], in_process(0)[0]
            r = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
            print(f"check: Pearson r of the two maps = {r:.4f}")
            medians = interleaved_medians(
                {"http": http, "in_process": in_process}, rounds=args.rounds, block=3
            )
    report(
        "fasterrcnn_mobilenet_v3_large_320_fpn Grad-CAM of one box",
        medians["http"],
        medians["in_process"],
        0.5,
        "pytorch-grad-cam in-process",
    )


if __name__ == "__main__":
    main()
