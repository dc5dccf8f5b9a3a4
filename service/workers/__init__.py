"""Where model code runs: off the event loop, in a pool of worker threads."""
