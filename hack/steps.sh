# One line per step, the step's own output in a log file (sourced by prereqs.sh, build-binaries.sh
# and venv.sh; hack/steps.py is the same for the Python steps):
#
#   [prereqs 3/7] etcd 3.6.16 from the Go module proxy (about 2 min cold) ... done in 1m 52s
#
# On failure: the log's last 30 lines, its path, and the step's exit code.
# STEP_PHASE names the phase, STEP_FIRST/STEP_TOTAL number the steps (a caller running several
# scripts as one phase sets them); logs go to $TORNADO_OPERATOR_CACHE/logs.

STEP_LOGS=${STEP_LOGS:-${TORNADO_OPERATOR_CACHE:-$HOME/.cache/tornado-operator}/logs}
STEP_PHASE=${STEP_PHASE:-}
step_n=${STEP_FIRST:-1}
step_total=${STEP_TOTAL:-?}

step_elapsed() {
  local s=$1
  if [ "$s" -ge 60 ]; then printf '%dm %02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# Sets $step_label to the next step's "[phase n/N]" (no subshell, so the count carries on).
step_next() {
  step_label="[${STEP_PHASE:+$STEP_PHASE }$step_n/$step_total]"
  step_n=$((step_n + 1))
}

# step_skip WHAT WHY: a step with nothing to do ("[prereqs 2/7] pause: cached").
step_skip() {
  step_next
  printf '%s %s: %s\n' "$step_label" "$1" "$2"
}

# step_run LOG WHAT COLD COMMAND...: run COMMAND with its output in $STEP_LOGS/LOG.log.
# COMMAND runs in a subshell with errexit on (it is not a condition, so `set -e` holds inside).
step_run() {
  local name=$1 what=$2 cold=$3 rc=0 t0=$SECONDS
  shift 3
  local log="$STEP_LOGS/$name.log"
  mkdir -p "$STEP_LOGS"
  step_next
  printf '%s %s (%s) ... ' "$step_label" "$what" "$cold"
  (set -euo pipefail; "$@") >"$log" 2>&1 </dev/null &
  wait $! || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "done in $(step_elapsed $((SECONDS - t0)))"
    return 0
  fi
  echo "FAILED after $(step_elapsed $((SECONDS - t0))) (exit $rc)"
  echo "--- last 30 lines of $log:"
  tail -n 30 "$log"
  echo "--- full log: $log"
  exit "$rc"
}
