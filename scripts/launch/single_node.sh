#!/usr/bin/env bash
# Train on the GPUs of one machine with torchrun:
#
#   bash scripts/launch/single_node.sh <num_gpus> experiment=<name> [hydra overrides...]
#
# The run directory, runs/<name>/<timestamp>, is decided here ONCE and passed to every rank as hydra.run.dir (each
# rank resolving ${now:} itself could land in a different folder). Environment:
#   RUN_DIR          use this run directory instead (e.g. to resume: RUN_DIR=runs/x/<stamp> ... train.resume=true)
#   OUTPUT_ROOT      parent of the default run directory (default: runs, relative to the repository root)
#   TORCHRUN         the torchrun executable (default: torchrun on PATH)
#   OMP_NUM_THREADS  threads per rank (default: the machine's cores / num_gpus)
#   DRY_RUN=1        print the command without running it
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat >&2 <<'USAGE'
usage: bash scripts/launch/single_node.sh <num_gpus> experiment=<name> [hydra overrides...]
  e.g. bash scripts/launch/single_node.sh 8 experiment=vidstg_qwen2vl_7b train.max_steps=100
  Runs torchrun --standalone --nproc_per_node <num_gpus> scripts/train.py in the repository root with
  hydra.run.dir=runs/<name>/<timestamp> (or $RUN_DIR when set). DRY_RUN=1 prints the command only.
USAGE
  exit "${1:-2}"
}

main() {
  check_leading_count 2 "$@"
  local num_gpus=$1
  shift
  local experiment
  experiment=$(experiment_of "$@")
  if [[ -z $experiment ]]; then
    usage
  fi
  check_overrides "$@"
  check_torchrun
  cd "$REPO_ROOT"
  local run_dir=${RUN_DIR:-${OUTPUT_ROOT:-runs}/$experiment/$(date +%Y-%m-%d_%H-%M-%S)}
  check_run_dir "$run_dir"
  set_process_env "$num_gpus"
  echo "run directory: $run_dir"
  launch "$TORCHRUN" --standalone --nproc_per_node "$num_gpus" scripts/train.py "$@" "hydra.run.dir=$run_dir"
}

main "$@"
