"""Models that ship with layerscope and need no download."""
