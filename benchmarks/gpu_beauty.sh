#!/usr/bin/env bash
# TIGER's task on Amazon Beauty on one GPU, to convergence within 10 minutes: the causal backbone on LETTER's
# published SIDs (the best CPU combination, see docs/benchmarks.md), a 7-minute training budget (training.budget_minutes),
# early stopping on validation NDCG@10, then full-ranking test evaluation; writes
# benchmarks/results/quality-amazon-beauty-2014-tiger-causal-letter-gpu.json with the GPU named in "device".
#
#   MMGR_SHARED_DATA=/path/to/shared/data benchmarks/gpu_beauty.sh [MINUTES] [--recipe R] [KEY=VALUE ...]
#   benchmarks/gpu_beauty.sh 0.2 training.accelerator=cpu --tag cpu-smoke     # the tiny CPU check of this script
# --recipe configs/tiger-item-causal.yaml trains the item-level causal backbone instead (the better one on 2 CPU
# cores); its results file is quality-amazon-beauty-2014-tiger-item-causal-letter-gpu.json.
#
# Install first (on a GPU machine without the constraints file, so pip takes a CUDA build of torch):
#   pip install -e ".[all]"
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-7}
shift || true
tag=gpu
recipe=configs/tiger-causal.yaml
args=()
while (($#)); do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --recipe) recipe=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
exec python benchmarks/tiger_beauty.py --recipe "$recipe" --sids letter --tag "$tag" \
    --minutes "$minutes" training.accelerator=gpu training.epochs=1000 training.batch_size=512 training.lr=0.003 \
    training.warmup_steps=100 model.user_buckets=0 training.eval_users=4000 training.patience=10 \
    decoding.batch_size=1024 "${args[@]}"
