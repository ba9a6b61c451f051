#!/usr/bin/env bash
# Time the README's main job step by step on this machine (run from the repo root, in a fresh clone to include the
# install): prints seconds per step and the total, then judges 20 fresh scenes with the pruned model.
#   bash benchmarks/main_job.sh [--no-install]
set -euo pipefail
t() { date +%s.%N; }
step() { local name=$1; shift; local a; a=$(t); "$@"; local b; b=$(t); printf '%-8s %7.1f s\n' "$name" "$(echo "$b - $a" | bc)" >> "$LOG"; }
LOG=$(mktemp)
start=$(t)
if [ "${1:-}" != "--no-install" ]; then
  step install bash -c 'python3 -m venv .venv && . .venv/bin/activate && pip install -q .'
fi
. .venv/bin/activate
# the main job, exactly as README.md's first command runs it (after the install)
cmd=$(sed -n '/<!-- main-job -->/,/^```$/p' README.md | sed -n '/^```bash$/,/^```$/p' | grep -v '^```' | sed 's/^.*pip install \. && //')
IFS='&' read -r -a parts <<< "${cmd//&&/&}"
for part in "${parts[@]}"; do
  part=$(echo "$part" | xargs)
  [ -z "$part" ] && continue
  step "$(echo "$part" | awk '{print $2}')" bash -c "$part"
done
end=$(t)
cat "$LOG"
printf 'total    %7.1f s (load average now: %s)\n' "$(echo "$end - $start" | bc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
python benchmarks/demo_scenes.py --run runs/demo --n 20 | tail -3
