"""Dataset exemplars of a layer's units: running top-k, receptive fields, montages."""
