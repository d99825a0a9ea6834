"""One flow's way from files to a destination: reading, processing, batching, sending, checkpoints."""
