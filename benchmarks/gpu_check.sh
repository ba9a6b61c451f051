#!/usr/bin/env bash
# The CUDA path end to end, on the GPU(s) of this machine (issue 14), in about 5 minutes on one GPU:
#   1. AMP training (bf16 where the GPU has it, else fp16 + GradScaler) of ud-paper and ort-paper on the synthetic
#      scenes' region features: images/s and peak memory from the run's own events;
#   2. supermask and gradual pruning runs, and SCST fine-tuning, on the GPU;
#   3. greedy and beam-3 decoding (`eval`, scored against the same checkpoint decoded on the CPU), sparse export
#      (fp16) and loading it to caption a fresh scene on the GPU;
#   4. the supermask / dense training-step ratio (benchmarks/bench_pruning.py --device cuda);
#   5. `--nproc N` (torchrun, NCCL) over all visible GPUs, resumed once; asking for more processes than GPUs must be
#      refused with one line on every rank.
# Every stage runs even when an earlier one failed (a stage that needs a failed one's output fails too); the script
# ends with the list of failed stages and a non-zero status if there is any.
#
#   bash benchmarks/gpu_check.sh            # OUT=/some/dir to keep the runs (default: a temporary folder)
#   DEVICE=cpu UD=ud-small ORT=ort-xsmall STEPS=20 NPROC=2 bash benchmarks/gpu_check.sh   # the script's own dry run
#   PROFILE=3 bash benchmarks/gpu_check.sh  # also torch.profiler's table of 3 supermask training steps per model
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/sparsecap-gpu-check.XXXXXX)}
DEVICE=${DEVICE:-cuda}
UD=${UD:-ud-paper}
ORT=${ORT:-ort-paper}
STEPS=${STEPS:-300}
PY=${PYTHON:-python3}  # the interpreter that holds torch (GPU images often have python3 only)
RUNS="$OUT/runs"
FAILED=()
# stage TITLE FUNCTION: run FUNCTION in a subshell that stops at its first error; record the stage if it failed
stage() {
  local title=$1
  shift
  printf '\n== %s  [%s]\n' "$title" "$(date +%T)"
  (set -e; "$@")  # not inside `if`: bash ignores set -e in a condition's commands, subshells included
  local rc=$?
  if [ $rc -ne 0 ]; then
    FAILED+=("$title")
    echo "gpu_check: FAILED ($rc): $title" >&2
  fi
}

devices() {
"$PY" - "$DEVICE" <<'PYEOF'
import sys

import torch

if not torch.cuda.is_available():
    print("gpu_check: torch sees no CUDA device", file=sys.stderr)
    sys.exit(0 if sys.argv[-1] == "cpu" else 1)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
print("torch", torch.__version__, "CUDA", torch.version.cuda)
PYEOF
sparsecap doctor || true  # SPICE may be unavailable offline: informative only
}

report() {  # images/s (median over the log events) and peak memory of a run, from its events.jsonl
"$PY" - "$1" <<'PYEOF'
import json
import statistics
import sys

events = [json.loads(line) for line in open(f"{sys.argv[1]}/events.jsonl")]
start = next(e for e in events if e["kind"] == "run_start")
train = [e for e in events if e["kind"] == "train"]
per_img = start["config"]["data"]["seq_per_img"]
rate = statistics.median(e["items_per_s"] for e in train[1:] or train) / per_img
peak = max(e.get("peak_mem_mb", 0) for e in train)
end = events[-1]
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {start['params'] / 1e6:.1f} M params, AMP {start.get('amp')}, "
      f"{start.get('processes', 1)} process(es): {rate:.0f} images/s, peak {peak / 1024:.2f} GiB per process, "
      f"status {end.get('status')}, best CIDEr-D {end.get('best_cider')}")
PYEOF
}

COMMON=(--features auto --device "$DEVICE" --amp --runs-root "$RUNS" -q)
train_preset() {
  sparsecap train --preset "$1" --name "$1" --steps "$STEPS" --batch-size 50 --val-every "$STEPS" \
    --set train.val_images=200 "${COMMON[@]}"
  report "$RUNS/$1"
}
prune_ud() {
  sparsecap prune --method "$1" --sparsity 0.95 --preset "$UD" --name "ud-$1" --steps $((STEPS * 2 / 3)) \
    --batch-size 50 --val-every $((STEPS * 2 / 3)) --set train.val_images=200 "${COMMON[@]}"
  report "$RUNS/ud-$1"
}
scst_ud() {
  sparsecap train --scst --from "$RUNS/$UD" --name ud-scst --steps 40 --batch-size 25 --val-every 40 \
    --set train.val_images=100 --device "$DEVICE" --amp --runs-root "$RUNS" -q
  report "$RUNS/ud-scst"
}
decode() {
  for device in "$DEVICE" cpu; do
    for beam in 1 3; do
      echo "eval on $device, beam $beam:"
      scores=$(sparsecap eval "$RUNS/ud-supermask" --split test --limit 200 --beam "$beam" --device "$device" \
        --metrics cider,bleu --per-image "$OUT/eval-$device-beam$beam.json")  # a failed eval stops the stage
      grep -E "CIDEr|BLEU-4" <<<"$scores" || true
    done
  done
  "$PY" - "$OUT" "$DEVICE" <<'PYEOF'
import json
import sys

out, device = sys.argv[1:]
for beam in (1, 3):
    gpu, cpu = (json.load(open(f"{out}/eval-{d}-beam{beam}.json")) for d in (device, "cpu"))
    caps = {r["image_id"]: r["caption"] for r in gpu}
    same = sum(caps[r["image_id"]] == r["caption"] for r in cpu)
    print(f"beam {beam}: {same} of {len(cpu)} captions identical on {device} and cpu")
PYEOF
}
export_and_caption() {
  sparsecap export "$RUNS/ud-supermask" --out "$OUT/ud-supermask.safetensors" --values fp16
  sparsecap inspect "$OUT/ud-supermask.safetensors" | tail -5
  sparsecap data scene --out "$OUT/scene.png"
  sparsecap caption "$OUT/scene.png" --checkpoint "$OUT/ud-supermask.safetensors" --device "$DEVICE" --beam 3
}
step_ratio() {
  for model in "$UD" "$ORT"; do
    "$PY" benchmarks/bench_pruning.py --model "$model" --device "$DEVICE" --skip-mask --steps 20 --warmup 5 --images 50 \
      ${PROFILE:+--profile "$PROFILE"}
  done
}
GPUS=${NPROC:-$("$PY" -c "import torch; print(torch.cuda.device_count())")}
ddp() {
  sparsecap train --nproc "$GPUS" --preset "$UD" --name ddp --steps 100 --batch-size $((50 * GPUS)) \
    --val-every 50 --set train.val_images=200 "${COMMON[@]}"
  report "$RUNS/ddp"
  "$PY" - "$RUNS/ddp" <<'PYEOF'
import sys
import tomllib
from pathlib import Path

path = Path(sys.argv[1]) / "config.toml"
text = path.read_text().replace("steps = 100\n", "steps = 150\n", 1)
assert tomllib.loads(text)["train"]["steps"] == 150
path.write_text(text)  # a longer schedule to resume into (the run's own config: --resume takes no --steps)
PYEOF
  sparsecap train --nproc "$GPUS" --resume --name ddp --runs-root "$RUNS" -q
  report "$RUNS/ddp"
}
too_many_processes() {  # more processes than GPUs: one line per rank, a non-zero exit, no traceback, no hang
  local n=$((GPUS + 1)) log="$OUT/too-many.log"
  if SPARSECAP_DEBUG= timeout 120 sparsecap train --nproc "$n" --preset "$UD" --name too-many --steps 5 --batch-size $((10 * n)) \
      "${COMMON[@]}" >"$log" 2>&1; then
    echo "gpu_check: --nproc $n on $GPUS GPU(s) was not refused" >&2
    return 1
  fi
  cat "$log"
  ! grep -q Traceback "$log"
  grep -q "CUDA device(s) here" "$log"
}

stage "devices" devices
for preset in "$UD" "$ORT"; do
  stage "train $preset: $STEPS steps, AMP" train_preset "$preset"
done
for method in supermask gradual; do
  stage "prune $UD with $method to 95 %: $((STEPS * 2 / 3)) steps" prune_ud "$method"
done
stage "SCST fine-tuning of $UD: 40 steps, AMP" scst_ud
stage "decoding on $DEVICE and cpu: greedy and beam 3 (test split, 200 images)" decode
stage "sparse export (fp16) and captioning with it on $DEVICE" export_and_caption
stage "supermask vs dense training step on $DEVICE ($UD, $ORT)" step_ratio
stage "torchrun over $GPUS process(es): $UD, 100 steps, then resumed to 150" ddp
if [ "$DEVICE" != cpu ]; then
  stage "--nproc $((GPUS + 1)) on $GPUS GPU(s) is refused" too_many_processes
fi

printf '\n== done  [%s]\n' "$(date +%T)"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'gpu_check: %d stage(s) FAILED (outputs in %s):\n' "${#FAILED[@]}" "$OUT" >&2
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "gpu_check: all stages passed; outputs in $OUT"
