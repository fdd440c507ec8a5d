"""The model layer: torch models as traced DAGs, their profiles, and exact split execution."""
