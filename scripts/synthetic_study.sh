#!/usr/bin/env bash
# The synthetic study of docs/results.md: Bridge-STG, the coupled baseline, the paper's ablations and ours, each with
# three seeds at equal budgets from the same pretrained tiny backbone (built once by the first run, reused by all),
# as two Hydra multiruns side by side (one CPU thread each; on a machine with more cores raise OMP_NUM_THREADS),
# then the results page with mean ± std per row and the differences from Bridge-STG that exceed the seed noise.
#   bash scripts/synthetic_study.sh [STUDY_DIR] [STEPS]   (default runs/study, 600 steps: about 75 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY_DIR=${1:-runs/study}
STEPS=${2:-600}
# shellcheck disable=SC2054  # the commas are a Hydra sweep (train.seed=0,1,2), not array separators
COMMON=(train.max_steps="$STEPS" train.eval_every=$((STEPS / 2)) train.seed=0,1,2 logging.progress=false)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

python scripts/pretrain.py hydra.run.dir="$STUDY_DIR/pretrain"  # once, before the two sweeps race for it

python scripts/train.py -m "${COMMON[@]}" hydra.sweep.dir="$STUDY_DIR/part_a" \
    experiment=synthetic,ablation/no_bridge,ablation/single_layer_bridge,ablation/no_token_selection,ablation/random_backbone,ablation/no_bridge_sentence &
pid_a=$!
python scripts/train.py -m "${COMMON[@]}" hydra.sweep.dir="$STUDY_DIR/part_b" \
    experiment=synthetic_coupled,ablation/no_negatives,ablation/no_contrastive,ablation/no_timestamps,ablation/no_motion_matching &
pid_b=$!
wait "$pid_a" "$pid_b"

python scripts/results_page.py "$STUDY_DIR/part_a" "$STUDY_DIR/part_b" --synthetic-dir data/synthetic \
    --out "$STUDY_DIR/page"
