"""Property-based fuzzing of every reader and of the SID-table import.

Each case mutates one file of a small valid source (truncation, byte flips, invalid UTF-8, NUL bytes, quotes, extra
or missing columns, duplicate, unknown, negative or huge ids, empty fields, very long lines, wrong JSON types,
duplicate JSON keys, header damage; BOM, CRLF, trailing blank lines and extra spaces must change nothing) and
imports it. The property: the import succeeds with exactly the sequences a careful reading gives
(`mmgr.fuzzing`), or raises `MmgrError` naming the file and leaves no run directory; never a traceback, never
a silent misread.

The default run tries a small seeded budget per reader; `pytest -m slow tests/unit/test_fuzz_readers.py` runs a
larger one (`benchmarks/fuzz.py` records a fixed budget in `benchmarks/results/fuzz.json`).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmgr import fuzzing

SOURCES = fuzzing.sources()
DEFAULT_BUDGET, SLOW_BUDGET = 25, 400
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    fuzzing.cleanup()


def check(outcome: fuzzing.Outcome) -> None:
    assert outcome.kind in ("accepted", "rejected"), (
        f"{outcome.source} seed {outcome.seed} ({outcome.mutation}): {outcome.kind}: {outcome.detail}")


@pytest.mark.parametrize("name", SOURCES)
@settings(max_examples=DEFAULT_BUDGET, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS)
def test_reader_accepts_exactly_or_refuses_by_name(name, seed):
    check(fuzzing.run_case(SOURCES[name], seed))


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("mutation", fuzzing.BENIGN)
def test_bom_crlf_blank_lines_and_spaces_change_nothing(name, mutation):
    for seed in range(3):
        outcome = fuzzing.run_case(SOURCES[name], seed, [mutation])
        assert outcome.kind == "accepted", f"{name} {mutation} seed {seed}: {outcome.kind}: {outcome.detail}"


@pytest.mark.parametrize("name", SOURCES)
def test_the_clean_source_is_read_as_its_reference_says(name):
    source = SOURCES[name]
    assert source.expected_clean                              # the reference reads the clean file
    outcome = fuzzing.run_case(source, 0, ["trailing_blank_lines"])
    assert outcome.kind == "accepted" and outcome.valid


def test_every_mutation_is_drawn_and_some_cases_are_refused():
    drawn = {fuzzing.mutate(SOURCES["generic"], seed)[0].split("+")[0] for seed in range(400)}
    assert drawn == set(fuzzing.MUTATIONS)
    kinds = {fuzzing.run_case(SOURCES["p5"], seed).kind for seed in range(30)}
    assert kinds == {"accepted", "rejected"}


@pytest.mark.parametrize("name", ["p5", "recbole-splits", "generic"])
def test_cli_refusal_is_exit_1_without_traceback_or_run(name, tmp_path):
    source = SOURCES[name]
    seed = next(s for s in range(200) if fuzzing.run_case(source, s, ["invalid_utf8"]).kind == "rejected")
    _, data = fuzzing.mutate(source, seed, ["invalid_utf8"])
    folder = tmp_path / "src"
    folder.mkdir()
    for file, content in source.files.items():
        (folder / file).write_bytes(data if file == source.target else content)
    result = subprocess.run([sys.executable, "-m", "mmgr", "data", "import", str(folder), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert source.target in result.stderr and "not UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_larger_budget(name):
    @settings(max_examples=SLOW_BUDGET, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=SEEDS)
    def run(seed):
        check(fuzzing.run_case(SOURCES[name], seed))

    run()

