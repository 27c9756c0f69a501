"""Training data: where it may come from, packed shards, streamed splits and batches."""
