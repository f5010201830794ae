"""The small valid source of every reader (`sources`, `sid_source`) and one fuzzing case (`run_case`)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError
from mmgr.fuzzing.mutations import BENIGN, mutate
from mmgr.fuzzing.references import (
    Invalid,
    Sequences,
    ref_amazon2014,
    ref_amazon2023,
    ref_generic,
    ref_lcrec,
    ref_p5,
    ref_recbole,
    ref_recbole_test_split,
    ref_sid_table,
)


@dataclass
class Source:
    """A small valid dataset of one reader (or a SID table), the file fuzzed and its reference reading."""

    name: str
    format: str
    files: dict[str, bytes]
    target: str
    reference: Callable[[bytes, Source], Any]
    sep: bytes | None = None          # field separator of the target (None: JSON)
    header: bool = False              # the target's first line is a header
    path: str = ""                    # PATH relative to the source folder ("" = the folder)
    maps: dict[str, Any] = field(default_factory=dict)
    expected_clean: Any = None

    def __post_init__(self) -> None:
        self.expected_clean = self.reference(self.files[self.target], self)


FULL = {"0": ["1", "2", "3", "4", "5"], "1": ["2", "3", "1", "6", "2", "4"], "2": ["5", "6", "1", "3"]}


def _splits(full: Sequences, cap: int = 3) -> dict[str, bytes]:
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    train, valid, test = [head], [head], [head]
    for user, seq in full.items():
        train.extend(f"{user}\t{' '.join(seq[:k][-cap:])}\t{seq[k]}\n" for k in range(len(seq) - 3, 0, -1))
        valid.append(f"{user}\t{' '.join(seq[:-2][-cap:])}\t{seq[-2]}\n")
        test.append(f"{user}\t{' '.join(seq[:-1][-cap:])}\t{seq[-1]}\n")
    return {f"Sci.{n}.inter": "".join(lines).encode() for n, lines in (("train", train), ("valid", valid),
                                                                        ("test", test))}


def sources() -> dict[str, Source]:
    """Every fuzzed reader's small valid source, by name."""
    id2item = {str(i): f"B{i:04d}" for i in range(1, 7)}
    id2user = {str(u): f"AREV{u}" for u in range(1, 5)}
    item2id = "".join(f"ASIN{i}\t{i}\n" for i in range(7)).encode()
    reviews14 = [{"reviewerID": f"U{u}", "asin": f"A{i}", "unixReviewTime": 100 + t, "overall": 5.0}
                 for t, (u, i) in enumerate([(1, 1), (1, 2), (2, 2), (1, 3), (2, 3), (3, 1), (2, 1), (3, 2)])]
    reviews23 = [{"user_id": r["reviewerID"], "parent_asin": r["asin"], "timestamp": r["unixReviewTime"] * 1000,
                  "rating": 4.0} for r in reviews14]
    meta14 = "".join(f"{{'asin': 'A{i}', 'title': 'Item {i}', 'categories': [['Toys']]}}\n" for i in range(1, 4))
    meta23 = "".join(json.dumps({"parent_asin": f"A{i}", "title": f"Item {i}"}) + "\n" for i in range(1, 4))
    out = [
        Source("p5", "p5", {"sequential_data.txt": b"1 1 2 3\n2 2 3 4 1\n3 4 5\n4 5 1 2 6 4\n",
                            "datamaps.json": json.dumps({"id2item": id2item, "id2user": id2user}).encode()},
               "sequential_data.txt", ref_p5, sep=b" ", maps={"item": id2item, "user": id2user}),
        Source("lcrec", "lcrec", {"Toy.inter.json": json.dumps({"0": [0, 1, 2], "1": [2, 3, 4, 0], "2": [4, 1],
                                                                "3": [3, 3, 2]}, indent=1).encode(),
                                  "Toy.item2id": item2id},
               "Toy.inter.json", ref_lcrec, maps={"item": {str(i): f"ASIN{i}" for i in range(7)}}),
        Source("recbole", "recbole", {"toy.inter": (
            b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            b"u1\ti2\t4\t300\nu1\ti1\t5\t100\nu2\ti1\t3\t50\nu1\ti3\t1\t200\nu2\ti3\t2\t60\nu3\ti2\t2\t10\n"),
            "toy.item": b"item_id:token\tmovie_title:token_seq\ni1\tHeat\ni2\tBabe\ni3\tUp\n"},
               "toy.inter", ref_recbole, sep=b"\t", header=True),
        Source("recbole-splits", "recbole", _splits(FULL), "Sci.test.inter", ref_recbole_test_split, sep=b"\t",
               header=True, maps={"full": FULL}),
        Source("amazon2014", "amazon2014", {"reviews_Toy_5.json": "".join(json.dumps(r) + "\n"
                                                                          for r in reviews14).encode(),
                                            "meta_Toy.json": meta14.encode()},
               "reviews_Toy_5.json", ref_amazon2014),
        Source("amazon2023", "amazon2023", {"Toy.jsonl": "".join(json.dumps(r) + "\n" for r in reviews23).encode(),
                                            "meta_Toy.jsonl": meta23.encode()},
               "Toy.jsonl", ref_amazon2023),
        Source("generic", "generic", {
            "interactions.csv": b"user_id,item_id,timestamp\nu1,i2,30\nu1,i1,10\nu2,i3,5\nu1,i4,20\nu2,i1,7\n"
                                b"u3,i2,1\n",
            "items.csv": b'item_id,title,categories\ni1,"One, first",Home|Kitchen\ni2,Two,Toys\ni3,Three,\n'
                         b"i4,Four,\n"},
               "interactions.csv", ref_generic, sep=b",", header=True),
        sid_source(),
    ]
    return {s.name: s for s in out}


SID_CATALOG = [f"ASIN{i}" for i in range(5)]


def sid_source() -> Source:
    """A SID table for the lcrec source's catalog (5 items with real ids; the table keys by source index)."""
    table = {"0": ["<a_1>", "<b_2>", "<c_3>"], "1": ["<A_4>", "<B_0>", "<C_1>"], "2": [5, "6", "<c_7>"],
             "3": ["<a_1>", "<b_2>", "<c_3>"], "4": ["<a_0>", "<b_1>", "<c_0>"]}
    return Source("sid-table", "lcrec", {"Toy.index.json": json.dumps(table, indent=1).encode()},
                  "Toy.index.json", ref_sid_table,
                  maps={"keys": [str(i) for i in range(5)], "ids": SID_CATALOG})


# --- running one case -----------------------------------------------------------------------------

@dataclass
class Outcome:
    source: str
    seed: int
    mutation: str
    kind: str                     # accepted, rejected, crash, misread, benign_rejected
    detail: str = ""
    valid: bool | None = None     # whether the reference reading accepts the mutated file


def run_case(source: Source, seed: int, names: list[str] | None = None, workdir: Path | None = None) -> Outcome:
    """Mutate the source for `seed`, import it, and classify the result against the reference reading."""
    mutation, data = mutate(source, seed, names)
    try:
        expected, valid = source.reference(data, source), True
    except Invalid:
        expected, valid = None, False
    benign = mutation in BENIGN
    if benign and expected != source.expected_clean:
        return Outcome(source.name, seed, mutation, "crash", "reference: benign mutation changed the reading", valid)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp) / "src"
        folder.mkdir()
        for name, content in source.files.items():
            (folder / name).write_bytes(data if name == source.target else content)
        try:
            got, out = _import(source, folder, Path(tmp))
        except MmgrError as exc:
            return _rejected(source, seed, mutation, str(exc), Path(tmp) / "run", benign, valid)
        except Exception as exc:  # noqa: BLE001 - a crash is what the fuzzer looks for
            return Outcome(source.name, seed, mutation, "crash", f"{type(exc).__name__}: {exc}"[:300], valid)
    if not valid:
        return Outcome(source.name, seed, mutation, "misread", "accepted a file the careful reading refuses", valid)
    if got != expected:
        return Outcome(source.name, seed, mutation, "misread", f"read {_short(got)}, expected {_short(expected)}",
                       valid)
    return Outcome(source.name, seed, mutation, "accepted", "", valid)


def _rejected(source: Source, seed: int, mutation: str, message: str, run: Path, benign: bool,
              valid: bool) -> Outcome:
    if source.target not in message:
        return Outcome(source.name, seed, mutation, "crash", f"error names no file: {message[:200]}", valid)
    if source.name != "sid-table" and run.exists():
        return Outcome(source.name, seed, mutation, "crash", f"a run directory was left: {message[:200]}", valid)
    kind = "benign_rejected" if benign else "rejected"
    return Outcome(source.name, seed, mutation, kind, message.split(": ", 1)[-1][:200], valid)


def _import(source: Source, folder: Path, tmp: Path) -> tuple[Any, Path]:
    from mmgr.config import load_config
    from mmgr.data.importer import import_into_run

    if source.name == "sid-table":
        return _import_table(source, folder / source.target), tmp
    config = load_config(overrides=[f"data.format={source.format}", f"data.path={folder / source.path}"])
    out = tmp / "run"
    _, dataset, _ = import_into_run(config, out)
    ids = dataset.items["item_id"].to_pylist()
    users = dataset.sequences["user_id"].to_pylist()
    return {u: [ids[i] for i in s] for u, s in zip(users, dataset.item_sequences(), strict=True)}, out


_SID_RUN: dict[str, Path] = {}


def _import_table(source: Source, table: Path) -> list[list[int]]:
    """Import `table` into a small fixed run (made once per process); existing codes must survive a refusal."""
    from mmgr.io import sha256_file
    from mmgr.rundir import RunDir
    from mmgr.tokenizers.stage import import_codes, load_codes

    run = RunDir(_sid_run())
    codes_file = run.path / "codes" / "text.safetensors"
    before = sha256_file(codes_file)
    try:
        report = import_codes(run, "text", table, "item_id", force=True)
    except MmgrError:
        if sha256_file(codes_file) != before:
            raise AssertionError("a refused table replaced the run's codes") from None
        raise
    codes = load_codes(run)["text"].codes
    return codes[:, :report["levels"]].tolist()


def _sid_run() -> Path:
    if "run" not in _SID_RUN:
        from mmgr.config import load_config
        from mmgr.data.importer import import_into_run
        from mmgr.rundir import RunDir
        from mmgr.tokenizers.stage import import_codes

        base = sources()["lcrec"]
        folder = Path(tempfile.mkdtemp(prefix="mmgr-fuzz-sid-"))
        for name, content in base.files.items():
            (folder / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / "src" / name).write_bytes(content)
        config = load_config(overrides=["data.format=lcrec", f"data.path={folder / 'src'}"])
        import_into_run(config, folder / "run")
        table = folder / "clean.index.json"
        table.write_bytes(sid_source().files["Toy.index.json"])
        import_codes(RunDir(folder / "run"), "text", table, "item_id")
        _SID_RUN["run"] = folder / "run"
        _SID_RUN["root"] = folder
    return _SID_RUN["run"]


def cleanup() -> None:
    """Remove the SID-table run made by `_sid_run`."""
    root = _SID_RUN.pop("root", None)
    _SID_RUN.pop("run", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
