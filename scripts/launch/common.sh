# shellcheck shell=bash
# Helpers shared by the launch scripts; sourced, never run on its own. The callers set `set -euo pipefail`.

# shellcheck disable=SC2034  # read by the scripts that source this file
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TORCHRUN=${TORCHRUN:-torchrun}

# die MESSAGE...: print "error: MESSAGE" on stderr and exit 2 (a usage error: nothing was started).
die() {
  printf 'error: %s\n' "$*" >&2
  exit 2
}

# is_count VALUE: whether VALUE is a positive integer.
is_count() {
  [[ $1 =~ ^[1-9][0-9]*$ ]]
}

# check_leading_count MIN ARGS...: -h/--help prints the usage (exit 0); fewer than MIN arguments or a first one that
# is not a positive count prints it too (exit 2). Each launcher defines usage().
check_leading_count() {
  local min=$1
  shift
  if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    usage 0
  fi
  if (($# < min)) || ! is_count "${1:-}"; then
    usage
  fi
}

# experiment_of OVERRIDES...: the value of the last `experiment=...` override, or nothing (Hydra's last one wins).
experiment_of() {
  local arg name=""
  for arg in "$@"; do
    if [[ $arg == experiment=* ]]; then
      name=${arg#experiment=}
    fi
  done
  printf '%s' "$name"
}

# check_overrides OVERRIDES...: the launcher owns the run directory; a second one given to Hydra would split the ranks.
check_overrides() {
  local arg
  for arg in "$@"; do
    if [[ $arg == hydra.run.dir=* || $arg == +hydra.run.dir=* ]]; then
      die "do not pass hydra.run.dir: the launcher sets it; choose the folder with RUN_DIR=<dir> instead"
    fi
  done
}

# check_run_dir DIR: a path Hydra reads as a plain (unquoted) override value.
check_run_dir() {
  if [[ ! $1 =~ ^[A-Za-z0-9._/+@-]+$ ]]; then
    die "run directory '$1' may only contain letters, digits and . _ / + @ - (it becomes a Hydra override)"
  fi
}

# set_process_env PROCS_PER_NODE: threads per rank (the node's cores shared out) and quiet tokenizers.
set_process_env() {
  local cores
  cores=$(nproc)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((cores / $1 > 0 ? cores / $1 : 1))}
  # The fast tokenizers' own thread pool and forked DataLoader workers deadlock-warn; workers parallelise instead.
  export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
}

# check_torchrun: fail early with the fix when torchrun is not on PATH (dry runs do not need it).
check_torchrun() {
  if [[ ${DRY_RUN:-0} != 1 ]] && ! command -v "$TORCHRUN" >/dev/null 2>&1; then
    die "'$TORCHRUN' not found: activate the project's environment or set TORCHRUN=/path/to/torchrun"
  fi
}

# launch COMMAND...: print COMMAND and replace this shell with it (DRY_RUN=1: print only).
launch() {
  printf 'command:'
  printf ' %q' "$@"
  printf '\n'
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    return 0
  fi
  exec "$@"
}
