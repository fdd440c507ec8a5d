"""The planner: profiles and telemetry in, versioned plans out (DESIGN §1, §4)."""
