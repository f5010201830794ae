"""Inference: a trained run loaded once as a `Ranker` (used by evaluation, `mmgr recommend` and serving), importing
no training code."""
