"""mmgr: multimodal generative recommendation. The Python API (see `mmgr.api`): `run`, `load`, `evaluate`,
`compare`."""

from mmgr.api import Recommender, RunResult, compare, evaluate, load, run

__version__ = "0.1.0"
__all__ = ["Recommender", "RunResult", "__version__", "compare", "evaluate", "load", "run"]
