# Shared by the bench scripts (sourced): every process a bench starts goes into PIDS and is
# stopped when the script exits, however it exits (TERM, then KILL after a second).
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
