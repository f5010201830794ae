"""Model bundles: what a trained run needs to serve, in one folder, checked part by part when it is loaded.

`export_bundle(RUN, OUT)` (`mmgr export RUN --out OUT`) copies the run's serving parts — manifest.json (config,
dataset fingerprint), items.parquet (catalog), sequences.parquet (known users' histories), model.safetensors,
vocabulary.json, codes/, tokenizers/ (to onboard new items), results.json — writes each decoding trie's item token
table to `trie/<target>.safetensors`, and `bundle.json`: the format version and the sha256 of every part, the
vocabulary's digest, and the item set (count + digest). `serving/` (items onboarded while serving) is the bundle's
live state, replayed on load, not a checked part.

`load_bundle(OUT)` refuses a bundle whose parts do not match — another format version, a part changed or missing,
a model trained on another vocabulary, a catalog with other items, a trie that the codes no longer give — naming
what differs, then returns the `Recommender` that `mmgr serve` runs. Items the run had onboarded (`serving/`) are
copied along, so the bundle serves the catalog the run served.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmgr.errors import MmgrError
from mmgr.io import read_arrays, sha256_file, write_arrays_atomic, write_json_atomic
from mmgr.rundir import MANIFEST, RunDir, now_iso
from mmgr.serving.store import STORE, Store

FORMAT, FORMAT_VERSION = "mmgr-bundle", 1
BUNDLE = "bundle.json"
FILES = (MANIFEST, "items.parquet", "sequences.parquet", "model.safetensors", "vocabulary.json", "results.json")
FOLDERS = ("codes", "tokenizers")
TRIE = "trie"
LIVE = STORE.parts[0]            # serving/: onboarded items, state, not a checked part


class BundleError(MmgrError):
    """A bundle that cannot be loaded as exported."""


def is_bundle(path: Path) -> bool:
    return (Path(path) / BUNDLE).is_file()


def export_bundle(run_path: Path, out: Path) -> dict[str, Any]:
    """Copy a trained run's serving parts into `out` (a new folder) and describe them in bundle.json. The bundle is
    assembled in a temporary sibling folder and renamed into place, so `out` is a whole bundle or absent."""
    from mmgr.inference.ranker import load_ranker

    run, out = RunDir(run_path), Path(out)
    if out.exists():
        raise MmgrError(f"{out} exists; choose a new folder for the bundle")
    with run.writing("export"):                        # no stage rewrites the run while it is copied
        ranker = load_ranker(run, run.config())        # refuses runs that are not trained or do not match
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
            staging = Path(scratch) / "bundle"
            description = _assemble(run, ranker, staging)
            os.replace(staging, out)
    return description


def _assemble(run: RunDir, ranker: Any, folder: Path) -> dict[str, Any]:
    folder.mkdir()
    for name in FILES:
        if (run.path / name).is_file():
            shutil.copy2(run.path / name, folder / name)
    for name in FOLDERS:
        if (run.path / name).is_dir():
            shutil.copytree(run.path / name, folder / name)
    if (run.path / LIVE).is_dir():                    # the items onboarded so far travel with the model
        shutil.copytree(run.path / LIVE, folder / LIVE, ignore=shutil.ignore_patterns(f"{STORE.name}*"))
    if (run.path / STORE).is_file():                  # a consistent copy, even while a server onboards
        store = Store(run.path / STORE)
        try:
            store.backup(folder / STORE)
        finally:
            store.close()
    for target, tokens in ranker.decoding_tables().items():
        write_arrays_atomic(folder / TRIE / f"{target}.safetensors", {"tokens": np.ascontiguousarray(tokens)},
                            {"target": target})
    description = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": now_iso(),
                   "source_run": run.path.name, "model": run.config().model.kind,
                   "vocabulary_sha256": vocabulary_digest(folder), **item_set(ranker.data.dataset.items),
                   "parts": {part: sha256_file(folder / part) for part in _parts(folder)}}
    write_json_atomic(folder / BUNDLE, description)
    return description


def load_bundle(path: Path, **options: Any):
    """The checked bundle as a `Recommender` (options: `limits`, `onboarding`); raises BundleError naming what
    differs when its parts do not match."""
    return _recommender(Path(path), load_checked(Path(path)), options.get("limits"), options.get("onboarding", True))


def load_recommender(path: Path, limits: Any = None, onboarding: bool = True):
    """The `Recommender` of a trained run directory or of a checked bundle: what `mmgr serve` and `mmgr.load`
    answer with (`limits`: a `serving.service.Limits`, default limits when None)."""
    from mmgr.inference.ranker import load_ranker

    path = Path(path)
    ranker = load_checked(path) if is_bundle(path) else load_ranker(RunDir(path), RunDir(path).config())
    return _recommender(path, ranker, limits, onboarding)


def _recommender(path: Path, ranker: Any, limits: Any, onboarding: bool):
    from mmgr.serving.onboarding import Onboarder
    from mmgr.serving.service import Limits, Recommender

    run = RunDir(path)
    return Recommender(ranker, limits or Limits(), Onboarder(run, run.config()) if onboarding else None)


def load_checked(path: Path):
    """The bundle's ranker, after every check (see the module docstring)."""
    from mmgr.inference.ranker import load_ranker

    description = read_description(path)
    check_parts(path, description)
    check_vocabulary(path, description)
    run = RunDir(path)
    ranker = load_ranker(run, run.config())
    check_items(path, description, ranker.data.dataset.items)
    check_tries(path, ranker.decoding_tables())
    return ranker


def read_description(path: Path) -> dict[str, Any]:
    file = path / BUNDLE
    if not file.is_file():
        raise BundleError(f"{path} is not a bundle (no {BUNDLE}); make one with `mmgr export RUN --out {path}`")
    try:
        description = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise BundleError(f"{file}: not an mmgr bundle description (format {FORMAT!r} expected)")
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{file}: bundle format version {version}, this mmgr reads version {FORMAT_VERSION}; "
                          "export the run again with this mmgr")
    return description


def check_parts(path: Path, description: dict[str, Any]) -> None:
    """Every exported part is present and unchanged, and nothing unexported sits among them."""
    recorded: dict[str, str] = description.get("parts", {})
    present = set(_parts(path))
    problems = [f"{part} is missing" for part in sorted(set(recorded) - present)]
    problems += [f"{part} is not one of the exported parts" for part in sorted(present - set(recorded))]
    problems += [f"{part} differs from the exported file (sha256 {sha256_file(path / part)[:12]}, exported "
                 f"{digest[:12]})" for part, digest in sorted(recorded.items())
                 if part in present and sha256_file(path / part) != digest]
    if problems:
        raise BundleError(f"bundle {path}: " + "; ".join(problems))


def check_vocabulary(path: Path, description: dict[str, Any]) -> None:
    """vocabulary.json is the one exported and the one model.safetensors was trained with."""
    from mmgr.weights import weights_info

    if not (path / "vocabulary.json").is_file():
        return                                               # item-id models (SASRec) have no vocabulary
    digest = vocabulary_digest(path)
    if digest != description.get("vocabulary_sha256"):
        raise BundleError(f"bundle {path}: vocabulary.json (digest {digest[:12]}) is not the exported vocabulary "
                          f"({str(description.get('vocabulary_sha256'))[:12]})")
    trained = weights_info(path / "model.safetensors").get("vocabulary_sha256")
    if trained != digest:
        raise BundleError(f"bundle {path}: model.safetensors was trained with vocabulary {str(trained)[:12]}, "
                          f"but vocabulary.json is {digest[:12]}")


def check_items(path: Path, description: dict[str, Any], items: Any) -> None:
    """The catalog holds exactly the exported item set."""
    found = item_set(items)
    if found["item_set_sha256"] == description.get("item_set_sha256"):
        return
    raise BundleError(f"bundle {path}: items.parquet holds {found['items']} items (digest "
                      f"{found['item_set_sha256'][:12]}), the bundle was exported with {description.get('items')} "
                      f"({str(description.get('item_set_sha256'))[:12]})")


def check_tries(path: Path, tables: dict[str, np.ndarray]) -> None:
    """The item token tables the codes give now are the exported tries'."""
    saved = {p.stem for p in (path / TRIE).glob("*.safetensors")}
    if saved != set(tables):
        raise BundleError(f"bundle {path}: trie/ holds targets {sorted(saved)}, the method decodes {sorted(tables)}")
    for target, tokens in tables.items():
        exported = read_arrays(path / TRIE / f"{target}.safetensors", None, "export the run again")[0]["tokens"]
        if exported.shape != tokens.shape or not np.array_equal(exported, tokens):
            raise BundleError(f"bundle {path}: the {target!r} trie the codes give ({tokens.shape[0]} items) is not "
                              f"the exported one ({exported.shape[0]} items)")


def vocabulary_digest(path: Path) -> str:
    """The digest a model records of its vocabulary (see `inference.prepared.codes_info`)."""
    from mmgr.tokenizers.codes import Vocabulary

    file = path / "vocabulary.json"
    if not file.is_file():
        return ""
    try:
        return Vocabulary.load(file).digest()
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{file}: not a vocabulary ({exc})") from None


def item_set(items: Any) -> dict[str, Any]:
    ids = items["item_id"].to_pylist()
    return {"items": len(ids), "item_set_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


def _parts(path: Path) -> list[str]:
    """Relative paths of the bundle's checked files (everything but bundle.json and the live state)."""
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                  if p.is_file() and p.name != BUNDLE and p.relative_to(path).parts[0] != LIVE)
