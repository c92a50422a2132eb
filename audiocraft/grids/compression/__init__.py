"""Grids of compression (EnCodec) experiments: ``dora -P audiocraft grid compression.<name>``."""
