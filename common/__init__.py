"""Shared infrastructure of the repository (imports no day) and, in `common.layers`, the
collected reusable layers of every day."""
