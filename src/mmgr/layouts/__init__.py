"""Sequence layouts: how a history of items becomes encoder tokens and the next item decoder targets."""
