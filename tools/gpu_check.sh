#!/usr/bin/env bash
# The GPU checks, on a machine with one GPU and no network, from the repo root with $OUT writable:
#
#   run(command="bash tools/gpu_check.sh", carry=[".gpu_wheels"], timeout_s=540)
#
# 1. installs, offline, the wheels tools/gpu_wheels.sh gathered beforehand (.gpu_wheels/, gitignored:
#    it travels only because `carry` names it), 2. prints the card, 3. runs, each under `timeout`,
#      python -m tools.bench gpu-smoke   every stage script on a tiny config (teacher_generate and a seqkd student
#                                        included), CUDA + bf16, 50 steps a model
#      python -m tools.bench gpu-real    t5-base -> t5-small shapes, bf16, 512/128 (tools/gpu_real.py)
#    and 4. prints a summary. All within GPU_CHECK_BUDGET_S (480 s, so that the machine's start, one or
#    more minutes, and a second run fit in 15 minutes). Writes to $OUT:
#    install.log, gpu_smoke.json/.log, gpu_real.json/.log, summary.txt. Exit 1 if a check failed.
#
#   bash tools/gpu_check.sh --dry   # here, without a GPU: no pip, both checks on the CPU at tiny sizes
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ ${1:-} == --dry ]] && DRY=1
OUT=${OUT:-$(mktemp -d -t gpu-check-XXXX)}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
REAL_S=${GPU_REAL_S:-210}  # kept for gpu-real (its own budget: 180 s), which runs last; gpu-smoke gets the rest
SMOKE_STEPS=${GPU_SMOKE_STEPS:-50}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
START=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - START))); }
say() { echo "gpu_check: $*" | tee -a "$OUT/summary.txt"; }

if ((DRY)); then
    say "dry run: no pip, CPU, tiny sizes (a check of this script, not of speed)"
    SMOKE_ARGS=(--device cpu --steps 2 --eval-size 8 --max-new-tokens 8)
    REAL_ARGS=(--device cpu --tiny --peak-tflops 1)
else
    if [[ ! -f .gpu_wheels/requirements.txt ]]; then
        say "no .gpu_wheels/ here: run tools/gpu_wheels.sh before, and name .gpu_wheels in the run's carry"
    elif timeout 150 "$PY" -m pip install -q --no-index --no-cache-dir --find-links .gpu_wheels \
            -r .gpu_wheels/requirements.txt >"$OUT/install.log" 2>&1; then
        say "installed $(tr '\n' ' ' <.gpu_wheels/requirements.txt)in $((SECONDS - START)) s"
    else
        say "pip install failed (rc $?); the checks run anyway. End of install.log:"
        tail -15 "$OUT/install.log"
    fi
    say "card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
    SMOKE_ARGS=(--steps "$SMOKE_STEPS")
    REAL_ARGS=()
fi
say "python $("$PY" -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__,
    "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"

FAILED=()
check() {  # check NAME SECONDS ARGS...: python -m tools.bench NAME under timeout, output kept in $OUT
    local name=$1 limit=$2 file=${1//-/_} rc
    shift 2
    if ((limit < 30)); then
        say "$name: skipped, $limit s left"; FAILED+=("$name"); return
    fi
    say "$name: running, at most $limit s"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$PY" -m tools.bench "$name" --out "$OUT/$file.json" "$@" >"$OUT/$file.log" 2>&1
    rc=$?
    tail -40 "$OUT/$file.log"
    if ((rc == 124 || rc == 137)); then say "$name: TIMED OUT after $limit s"; FAILED+=("$name")
    elif ((rc != 0)); then say "$name: exit $rc after $((SECONDS - t0)) s"; FAILED+=("$name")
    else say "$name: ok in $((SECONDS - t0)) s"; fi
}

check gpu-smoke $(($(left) - REAL_S)) "${SMOKE_ARGS[@]}"
check gpu-real $(($(left) - 10)) "${REAL_ARGS[@]}"

"$PY" - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else {}
smoke, real = load("gpu_smoke"), load("gpu_real")
print("summary:")
print(f"  gpu-smoke: {'ok' if smoke.get('ok') else 'no result / over budget'}; wall {smoke.get('wall_s')} s")
if real:
    print(f"  gpu-real on {real['device_name']} ({real['date']}, torch {real['torch']}, transformers {real['transformers']}):")
    for key in ("train_label_tokens_per_s", "train_kd_tokens_per_s", "teacher_outputs_tokens_per_s"):
        mfu = real.get(key.replace("tokens_per_s", "mfu"))
        print(f"    {key}: {real[key]:,.0f}" + (f"  (mfu {mfu:.1%})" if mfu else ""))
    for key in sorted(k for k in real if k.endswith("samples_per_s")):
        print(f"    {key}: {real[key]:.2f} (worst case: every beam {real['target_len']} tokens)")
    print(f"    wall {real['wall_s']:.0f} s")
else:
    print("  gpu-real: no result")
EOF
say "done in $((SECONDS - START)) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
if ((${#FAILED[@]})); then say "FAILED: ${FAILED[*]}"; exit 1; fi
