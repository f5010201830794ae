"""mmgr: multimodal generative recommendation. The Python API (see `mmgr.api`): `run`, `load`, `evaluate`,
`compare`."""

from mmgr.api import Recommender, RunResult, compare, evaluate, load, run
from mmgr.version import __version__

__all__ = ["Recommender", "RunResult", "__version__", "compare", "evaluate", "load", "run"]
