"""Sequence models: the T5-style generator and the SASRec baseline."""
