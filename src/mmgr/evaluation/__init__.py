"""Ranking metrics, the evaluation protocol and paired significance tests."""
