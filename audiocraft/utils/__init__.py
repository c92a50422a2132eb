"""Small helpers that no better-named module owns."""
