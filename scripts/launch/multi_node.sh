#!/usr/bin/env bash
# Train on several machines: run this same command on EVERY node (slurm.sbatch does it with srun); torchrun's c10d
# rendezvous at MASTER_ADDR:MASTER_PORT gathers the nodes and numbers them.
#
#   RUN_DIR=/shared/runs/<name>/<stamp> NNODES=<n> MASTER_ADDR=<host of node 0> \
#     bash scripts/launch/multi_node.sh <gpus_per_node> experiment=<name> [hydra overrides...]
#
# RUN_DIR is required and must be the same path, on a filesystem every node shares, for all nodes: checkpoints,
# logs and the evaluation are written there by ranks of different nodes, and resuming reads it back. Environment:
#   RUN_DIR          the run directory (required; relative paths are relative to the repository root)
#   NNODES           number of nodes (required; torchrun also accepts a range MIN:MAX)
#   MASTER_ADDR      host name or address of the rendezvous node, reachable from every node (required)
#   MASTER_PORT      rendezvous port (default 29500)
#   RDZV_ID          rendezvous id, the same on all nodes (default: derived from RUN_DIR)
#   TORCHRUN, OMP_NUM_THREADS, DRY_RUN=1   as in single_node.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat >&2 <<'USAGE'
usage: RUN_DIR=<shared dir> NNODES=<n> MASTER_ADDR=<host> [MASTER_PORT=29500] \
         bash scripts/launch/multi_node.sh <gpus_per_node> [experiment=<name>] [hydra overrides...]
  Run it on every node with the same arguments and environment; RUN_DIR must be on a filesystem all nodes share.
USAGE
  exit "${1:-2}"
}

require_env() {
  local name
  for name in "$@"; do
    if [[ -z ${!name:-} ]]; then
      die "$name is not set: $(hint_for "$name")"
    fi
  done
}

hint_for() {
  case $1 in
    RUN_DIR) echo "set RUN_DIR to the run directory, the same path on every node, on a shared filesystem" ;;
    NNODES) echo "set NNODES to the number of nodes" ;;
    MASTER_ADDR) echo "set MASTER_ADDR to the host name of the first node (reachable from all nodes)" ;;
  esac
}

main() {
  check_leading_count 1 "$@"
  local gpus_per_node=$1
  shift
  require_env RUN_DIR NNODES MASTER_ADDR
  check_run_dir "$RUN_DIR"
  check_overrides "$@"
  check_torchrun
  cd "$REPO_ROOT"
  local port=${MASTER_PORT:-29500}
  local rdzv_id=${RDZV_ID:-$(printf '%s' "$RUN_DIR" | cksum | cut -d' ' -f1)}
  set_process_env "$gpus_per_node"
  echo "run directory: $RUN_DIR (node $(hostname), rendezvous $MASTER_ADDR:$port, id $rdzv_id)"
  launch "$TORCHRUN" --nnodes "$NNODES" --nproc_per_node "$gpus_per_node" \
    --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$port" --rdzv_id "$rdzv_id" \
    scripts/train.py "$@" "hydra.run.dir=$RUN_DIR"
}

main "$@"
