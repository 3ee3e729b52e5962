#!/usr/bin/env bash
# The synthetic study of docs/results.md: Bridge-STG, the coupled baseline and the ablations at equal budgets (the
# experiment=synthetic schedule: 1000 steps of 8 clips, seed 0), as two Hydra multiruns side by side (one CPU
# thread each; on a machine with more cores raise OMP_NUM_THREADS), then the results page.
#   bash scripts/synthetic_study.sh [STUDY_DIR]   (default runs/study)
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY_DIR=${1:-runs/study}
COMMON=(train.eval_every=250)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

python scripts/train.py -m "${COMMON[@]}" hydra.sweep.dir="$STUDY_DIR/part_a" \
    experiment=synthetic,ablation/no_bridge,ablation/no_token_selection,ablation/no_contrastive,ablation/no_text_pooling,ablation/no_position_cue &
pid_a=$!
python scripts/train.py -m "${COMMON[@]}" hydra.sweep.dir="$STUDY_DIR/part_b" \
    experiment=synthetic_coupled,ablation/single_layer_bridge,ablation/no_negatives,ablation/no_timestamps,ablation/no_token_relevance &
pid_b=$!
wait "$pid_a" "$pid_b"

python scripts/results_page.py "$STUDY_DIR/part_a" "$STUDY_DIR/part_b" --synthetic-dir data/synthetic \
    --out "$STUDY_DIR/page"
