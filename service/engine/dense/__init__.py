"""Segmentation and detection models: their outputs, predictions, targets and pictures."""
