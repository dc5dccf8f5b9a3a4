"""Two models compared: layer similarity (CKA), predictions and activation drift."""
