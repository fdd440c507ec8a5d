"""dads: the library under the services (graph, profile, partition, split, wire, metrics, probe)."""
