"""Fast paths: code that does what a maintained library or torch's public API already does,
kept because a bench shows a gain worth it, each with its own switch and a test against the
plain path.

- `packed_convolution`: a CAM's CPU convolutions on weights reordered once for oneDNN
  (`torch._C._nn.mkldnn_reorder_conv2d_weight`, `torch.ops.mkldnn._convolution_pointwise`,
  private torch APIs); `packed_check` checks a whole model once at load time. Switch:
  `LAYERSCOPE_PACK_CONVOLUTIONS`. Test: `tests/model_registry/test_packed_convolution.py`.
  Bench: `bench/convolution.py`.
- `pooling`: max pooling on a channels-last copy (public API, private knowledge of which
  kernel is fast). Switch: `LAYERSCOPE_CHANNELS_LAST_POOLING`. Test:
  `tests/model_registry/test_pooling.py`. Bench: `bench/threads.py`.
- `png`: a PNG writer on ISA-L deflate instead of Pillow's encoder. Switch:
  `LAYERSCOPE_FAST_PNG`. Test: `tests/engine/test_encode.py`. Bench: `bench/png.py`.

Checked with torch 2.14.1 (CPU build with oneDNN) and Pillow 13.0.0: a new torch release
may move or change the private operators, which is why each path checks itself against the
plain one (the packed convolutions on their first call per shape) and falls back.
"""
