"""Seeded mutations of small valid source files, and a careful reference reading of each, for fuzzing the readers.

Shared by `tests/unit/test_fuzz_readers.py` (hypothesis draws the seeds) and `benchmarks/fuzz.py` (a fixed budget).
Modules: `mutations` (seeded damage to a file), `references` (careful independent readings), `cases` (the
sources and one fuzzing case).

A `Source` is a small valid dataset of one reader: its files, the one file that gets mutated, and `reference`, an
independent careful reading of that file (the other files are fixed) that returns {user id: [item ids]} or raises
`Invalid`. `run_case` imports the mutated source through `mmgr.data.importer.import_into_run` and classifies it:

- `accepted`: imported, and the import equals the reference reading;
- `rejected`: a `MmgrError` whose message names the mutated file (and nothing of the run was left behind);
- `crash`: any other exception (a traceback for the user), or a rejection that names no file or leaves a run;
- `misread`: imported, but the reference says the file is invalid or reads other sequences (a silent misread);
- `benign_rejected`: a mutation that must not change anything (BOM, CRLF, blank lines, spaces) was refused.

The SID-table source imports a mutated `index.json` into a fixed small run (`import_codes`) and compares the codes.
"""

from mmgr.fuzzing.cases import Outcome, Source, cleanup, run_case, sources
from mmgr.fuzzing.mutations import BENIGN, MUTATIONS, mutate

__all__ = ["BENIGN", "MUTATIONS", "Outcome", "Source", "cleanup", "mutate", "run_case", "sources"]
