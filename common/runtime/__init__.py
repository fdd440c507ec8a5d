"""The runtime layer: wire contract, tensor frames, ZeroMQ channel, service base, metrics, config."""
