"""The edge agent: frames in, edge part here, the rest in the cloud (DESIGN §1, §5)."""
