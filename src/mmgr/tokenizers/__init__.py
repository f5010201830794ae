"""Semantic-ID tokenizers: estimators that turn item features into short code tuples."""
