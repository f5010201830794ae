"""Serving a trained run: a recommender over any engine's ranker, micro-batching, the HTTP app."""
