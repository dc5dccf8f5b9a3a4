"""The layerscope service: app, worker pool and visualization engine."""
