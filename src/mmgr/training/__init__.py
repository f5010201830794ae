"""The generic training loop (Lightning Fabric), its examples and batches, budgets and resumable checkpoints; what
is trained is an objective's (`mmgr.objectives`), for an engine (`mmgr.engines`)."""
