"""Training: examples and batches, the loop (Lightning Fabric), resumable checkpoints."""
