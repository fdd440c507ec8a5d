"""The broker: edge agents in front, a pool of cloud workers behind (DESIGN §1, §5)."""
