"""Planning: cost graphs and the pure functions that choose cuts (no torch, zmq or asyncio)."""
