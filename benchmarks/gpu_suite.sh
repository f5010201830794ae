#!/usr/bin/env bash
# The Arts suite (configs/suites/arts-gpu.yaml) on a lent GPU machine, which reaches no package registry and lacks
# pydantic and faiss, and to which ../shared/data does not travel.
#
#   benchmarks/gpu_suite.sh prepare            # here: wheels of what that machine lacks (Python 3.12, x86_64) and a
#                                              # copy of the Arts data, into gpu_carry/ (ignored by git; < 64 MiB)
#   benchmarks/gpu_suite.sh run [KEY=VALUE]... # there: install the wheels beside the repo, run the suite into $OUT
#   benchmarks/gpu_suite.sh run training.accelerator=cpu training.max_steps=3 training.eval_users=50
#                                              # the tiny CPU check of the whole path, here
# The device tool's command: `bash benchmarks/gpu_suite.sh run` with carry ["gpu_carry"]; its summary and report
# come back under $OUT/suite-arts-gpu, its run records under $OUT/records/arts-gpu (to commit in benchmarks/records).
set -euo pipefail
cd "$(dirname "$0")/.."
carry=gpu_carry
case ${1:-} in
    prepare)
        rm -rf "$carry/wheels" && mkdir -p "$carry/wheels" "$carry/data"
        pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
            --implementation cp -d "$carry/wheels" pydantic faiss-cpu 2>&1 | grep -v "^WARNING" || true
        rm -f "$carry"/wheels/numpy-* "$carry"/wheels/typing_extensions-* "$carry"/wheels/packaging-*
        cp -r "${MMGR_SHARED_DATA:-../shared/data}/amazon-arts-2018" "$carry/data/"
        du -sh "$carry"
        ;;
    run)
        shift
        site=$carry/site
        if ! python3 -c "import pydantic, faiss" 2>/dev/null; then
            python3 -m pip install -q --no-index --find-links "$carry/wheels" --target "$site" pydantic faiss-cpu
        fi
        out=${OUT:-$carry/out}
        PYTHONPATH="src:$site${PYTHONPATH:+:$PYTHONPATH}" python3 -m mmgr bench --suite configs/suites/arts-gpu.yaml \
            --runs "$carry/runs" --records "$out/records/arts-gpu" --out "$out/suite-arts-gpu" --no-progress "$@"
        ;;
    *)
        echo "usage: $0 prepare | run [KEY=VALUE]..." >&2
        exit 2
        ;;
esac
