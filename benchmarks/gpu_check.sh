#!/usr/bin/env bash
# The CUDA path end to end, on the GPU(s) of this machine (issue 14), in about 8 minutes on one GPU:
#   1. AMP training (bf16 where the GPU has it, else fp16 + GradScaler) of ud-paper and ort-paper on the synthetic
#      scenes' region features: images/s and peak memory from the run's own events;
#   2. supermask and gradual pruning runs on the GPU;
#   3. greedy and beam-3 decoding (`eval`), sparse export (fp16) and loading it to caption a fresh scene on the GPU;
#   4. the supermask / dense training-step ratio (benchmarks/bench_pruning.py --device cuda);
#   5. `--nproc N` (torchrun, NCCL) over all visible GPUs, resumed once.
# Any error stops the script with a non-zero status (set -e) and says which stage failed.
#
#   bash benchmarks/gpu_check.sh            # OUT=/some/dir to keep the runs (default: a temporary folder)
#   DEVICE=cpu UD=ud-small ORT=ort-xsmall STEPS=20 NPROC=2 bash benchmarks/gpu_check.sh   # the script's own dry run
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/sparsecap-gpu-check.XXXXXX)}
DEVICE=${DEVICE:-cuda}
UD=${UD:-ud-paper}
ORT=${ORT:-ort-paper}
STEPS=${STEPS:-300}
RUNS="$OUT/runs"
STAGE=start
trap 'echo "gpu_check: FAILED at stage: $STAGE (outputs in $OUT)" >&2' ERR
stage() { STAGE="$*"; printf '\n== %s  [%s]\n' "$*" "$(date +%T)"; }

stage "devices"
python - "$DEVICE" <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    print("gpu_check: torch sees no CUDA device", file=sys.stderr)
    sys.exit(0 if sys.argv[-1] == "cpu" else 1)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
print("torch", torch.__version__, "CUDA", torch.version.cuda)
EOF
sparsecap doctor || true  # SPICE may be unavailable offline: informative only

report() {  # images/s (median over the log events) and peak memory of a run, from its events.jsonl
python - "$1" <<'EOF'
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
EOF
}

COMMON=(--features auto --device "$DEVICE" --amp --runs-root "$RUNS" -q)
for preset in "$UD" "$ORT"; do
  stage "train $preset: $STEPS steps, AMP"
  sparsecap train --preset "$preset" --name "$preset" --steps "$STEPS" --batch-size 50 --val-every "$STEPS" \
    --set train.val_images=200 "${COMMON[@]}"
  report "$RUNS/$preset"
done

for method in supermask gradual; do
  stage "prune $UD with $method to 95 %: $((STEPS * 2 / 3)) steps"
  sparsecap prune --method "$method" --sparsity 0.95 --preset "$UD" --name "ud-$method" --steps $((STEPS * 2 / 3)) \
    --batch-size 50 --val-every $((STEPS * 2 / 3)) --set train.val_images=200 "${COMMON[@]}"
  report "$RUNS/ud-$method"
done

stage "decoding on $DEVICE: greedy and beam 3 (test split, 200 images)"
sparsecap eval "$RUNS/ud-supermask" --split test --limit 200 --device "$DEVICE"
sparsecap eval "$RUNS/ud-supermask" --split test --limit 200 --beam 3 --device "$DEVICE"

stage "sparse export (fp16) and captioning with it on $DEVICE"
sparsecap export "$RUNS/ud-supermask" --out "$OUT/ud-supermask.safetensors" --values fp16
sparsecap inspect "$OUT/ud-supermask.safetensors" | tail -5
sparsecap data scene --out "$OUT/scene.png"
sparsecap caption "$OUT/scene.png" --checkpoint "$OUT/ud-supermask.safetensors" --device "$DEVICE" --beam 3

stage "supermask vs dense training step on $DEVICE ($UD, $ORT)"
python benchmarks/bench_pruning.py --model "$UD" --device "$DEVICE" --skip-mask --steps 20 --warmup 5 --images 50
python benchmarks/bench_pruning.py --model "$ORT" --device "$DEVICE" --skip-mask --steps 20 --warmup 5 --images 50

GPUS=${NPROC:-$(python -c "import torch; print(torch.cuda.device_count())")}
stage "torchrun over $GPUS process(es): $UD, 100 steps, then resumed to 150"
sparsecap train --nproc "$GPUS" --preset "$UD" --name ddp --steps 100 --batch-size $((50 * GPUS)) \
  --val-every 50 --set train.val_images=200 "${COMMON[@]}"
report "$RUNS/ddp"
python - "$RUNS/ddp" <<'EOF'
import sys
import tomllib
from pathlib import Path

path = Path(sys.argv[1]) / "config.toml"
text = path.read_text().replace("steps = 100\n", "steps = 150\n", 1)
assert tomllib.loads(text)["train"]["steps"] == 150
path.write_text(text)  # a longer schedule to resume into (the run's own config: --resume takes no --steps)
EOF
sparsecap train --nproc "$GPUS" --resume --name ddp --runs-root "$RUNS" -q
report "$RUNS/ddp"

stage "done"
echo "gpu_check: all stages passed; outputs in $OUT"
