"""Engines: `train` and `evaluate` a run for its `model.kind` (the generative path of every SID method, SASRec), and
the composition of a method's registered parts."""
