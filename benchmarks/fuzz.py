"""Fuzzing the readers with a fixed seeded budget: every reader (p5, lcrec, recbole, recbole benchmark splits,
amazon2014, amazon2023, generic) and the SID-table import, each on its small valid source from `mmgr/fuzzing`
mutated seed by seed (seeds 0 .. N-1). Per reader: cases tried, accepted (with the sequences a careful reading
gives), rejected with a named error, crashes (tracebacks, errors naming no file, a run left behind), silent misreads
and refused benign mutations (target: 0 of the last three), plus counts per mutation and the first failures.

    python benchmarks/fuzz.py --cases 300

Writes benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
import common  # noqa: E402

from mmgr import fuzzing  # noqa: E402
from mmgr.io import write_json_atomic  # noqa: E402
from mmgr.rundir import git_commit  # noqa: E402

FAILURES = ("crash", "misread", "benign_rejected")


def fuzz_source(source: fuzzing.Source, cases: int) -> dict[str, Any]:
    """Run seeds 0 .. cases-1 on one source; the counts and the first failures."""
    kinds: Counter[str] = Counter()
    by_mutation: dict[str, Counter[str]] = {}
    failures: list[dict[str, Any]] = []
    start = time.perf_counter()
    for seed in range(cases):
        outcome = fuzzing.run_case(source, seed)
        kinds[outcome.kind] += 1
        by_mutation.setdefault(outcome.mutation.split("+")[0], Counter())[outcome.kind] += 1
        if outcome.kind in FAILURES and len(failures) < 10:
            failures.append({"seed": seed, "mutation": outcome.mutation, "kind": outcome.kind,
                             "detail": outcome.detail})
    return {"tried": cases, "accepted": kinds["accepted"], "rejected_named": kinds["rejected"],
            "crashes": kinds["crash"], "silent_misreads": kinds["misread"],
            "benign_rejected": kinds["benign_rejected"], "seconds": round(time.perf_counter() - start, 2),
            "by_mutation": {m: dict(c) for m, c in sorted(by_mutation.items())}, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="seeds per reader")
    parser.add_argument("--only", nargs="*", help="reader names (default: all)")
    args = parser.parse_args()
    sources = fuzzing.sources()
    names = args.only or list(sources)
    started = time.perf_counter()
    readers = {}
    try:
        for name in names:
            readers[name] = fuzz_source(sources[name], args.cases)
            r = readers[name]
            print(f"{name:15s} tried {r['tried']}  accepted {r['accepted']}  rejected {r['rejected_named']}  "
                  f"crashes {r['crashes']}  misreads {r['silent_misreads']}  benign refused {r['benign_rejected']}")
    finally:
        fuzzing.cleanup()
    totals = {key: sum(r[key] for r in readers.values())
              for key in ("tried", "accepted", "rejected_named", "crashes", "silent_misreads", "benign_rejected")}
    result = {"benchmark": "fuzz", "dataset": "small generated sources (mmgr.fuzzing)",
              "method": "seeded mutations", "metrics": totals, "readers": readers,
              "mutations": sorted(fuzzing.MUTATIONS),
              "benign_mutations": sorted(fuzzing.BENIGN), "seeds": f"0..{args.cases - 1} per reader",
              "device": common.describe_device(), "wall_seconds": round(time.perf_counter() - started, 3),
              "command": common.command(), "commit": git_commit(),
              "created": common.datetime.now(common.UTC).isoformat(timespec="seconds")}
    path = common.RESULTS / "fuzz.json"
    write_json_atomic(path, common._relative(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
