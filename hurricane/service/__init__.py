"""The service outside its API and workers: the client and its commands, the local stack, tokens,
admission limits."""
