"""mmgr: multimodal generative recommendation."""

__version__ = "0.1.0"
