"""The networks a search builds: the op pool, architectures, backbone, supernet, training, export."""
