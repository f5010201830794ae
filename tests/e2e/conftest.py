from __future__ import annotations

import pytest

from tests.helpers import mmgr, run_args


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    run = folder / "run"
    mmgr(*run_args("tiger", run, folder / "cache"), "model.user_buckets=20")
    return run


@pytest.fixture(scope="session")
def multimodal(tmp_path_factory):
    """A tiny late-fusion (text + image) run of the synthetic world, where every item has an image."""
    folder = tmp_path_factory.mktemp("serve-lf")
    run = folder / "run"
    mmgr(*run_args("mgr-lf", run, folder / "cache"))
    return run

