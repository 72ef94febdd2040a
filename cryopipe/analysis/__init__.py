"""Stage 3: conformational space, per-group reconstruction, resolution (issue 5, in progress)."""
