"""A cloud worker: runs the cloud part of the plan named by each request (DESIGN §1, §5)."""
