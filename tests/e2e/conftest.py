from __future__ import annotations

import pytest

from tests.helpers import mmgr


@pytest.fixture(scope="session")
def encoded_run(tmp_path_factory):
    """A small synthetic run with text and image features (its own content cache)."""
    folder = tmp_path_factory.mktemp("enc")
    run = folder / "run"
    mmgr("data", "import", "--format", "synthetic", "--out", str(run), "data.synthetic.n_items=40",
         "data.synthetic.n_users=30", "data.synthetic.image_size=32", f"encoders.cache_dir={folder / 'cache'}")
    for modality in ("text", "image"):
        mmgr("encode", str(run), "--modality", modality, "--no-progress")
    return run
