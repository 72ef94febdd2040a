"""Reference structure, normal modes, deformations and ground-truth conformations."""
