#!/usr/bin/env bash
# TriAlignGR's full eight-task model on its LLM generator, on one GPU within 10 minutes: gemma-3-270m (offline
# package) with the CMSA+MDIM SID tokens appended and LoRA adapters, MovieLens-100K-posters, batch 64, early
# stopping on validation NDCG@10, full-ranking test evaluation, title-from-SID fidelity. Captions and interest tags
# are generated first where the mmgr cache does not hold them (gemma on the GPU: about a minute for 1,682 items).
# Writes benchmarks/results/quality-movielens-100k-posters-trialigngr-trialigngr-llm-gpu.json and adds the row to
# trialigngr-movielens-100k-posters-summary.json, with the GPU named in "device".
#
#   MMGR_SHARED_DATA=/path/to/shared/data benchmarks/gpu_trialigngr_llm.sh [STEPS] [KEY=VALUE ...]
#   benchmarks/gpu_trialigngr_llm.sh 2 --check training.accelerator=cpu training.batch_size=4   # tiny CPU check
#       (its own row, trialigngr-llm-gpu-check, so it never replaces the GPU row)
#
# Install first (on a GPU machine without the constraints file, so pip takes a CUDA build of torch):
#   pip install -e ".[all]"
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1500}
shift || true
row=trialigngr-llm-gpu
args=()
while (($#)); do
    if [[ $1 == --check ]]; then row=trialigngr-llm-gpu-check; else args+=("$1"); fi
    shift
done
exec python benchmarks/trialigngr.py --dataset ml-100k --variants "$row" --steps "$steps" \
    --epochs 1000 --patience 3 "${args[@]}"
