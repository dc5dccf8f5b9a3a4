"""Dataset-level analysis: statistics, predictions and embeddings over a whole set."""
