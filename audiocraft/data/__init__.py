"""Audio input/output, datasets and manifests."""
