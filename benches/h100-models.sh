#!/usr/bin/env bash
# Whole-model numbers on the H100 (issue 13): Qwen2-0.5B-sized random models exported on the
# device, timed by `glufuse bench MODEL` (fused and unfused, each in a fresh process; and one
# run with --same-process), beside PyTorch eager and, optionally, onnxruntime's WebGPU EP.
#   Here:  bash ../shared/device/prepare.sh; cargo build --release
#          mkdir -p .carry && cp target/release/glufuse .carry/glufuse && strip .carry/glufuse
#   Then:  device run with carry [".gl", ".carry"] (and ".whl" for ORT=1): bash benches/h100-models.sh
# What comes back ($OUT): models.log (every step, its exit code and seconds, every table) and
# results.tgz: a .md table and a .json report per bench, the export's report_perf.json
# (PyTorch eager timings), probe.txt, clocks.csv and the exported graphs without their
# weights (graphs/). Each step has a time limit; a failed step is logged and the next runs.
# Knobs (environment): GLUFUSE (binary), EXPORT, FILL and ORT_SCRIPT (the Python scripts),
# MODELS (export folder), GRAPHS (graphs of an earlier run: no export), DTYPES ("f16 f32"),
# EXPORT_LIMIT (s, all exports), PROBE=1 (the slowdown experiment first), SAME=0 (skip
# --same-process of the first dtype), ORT=1, BUDGET (s, for the whole script).
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export PYTHONUNBUFFERED=1
B=${GLUFUSE:-.carry/glufuse}
OUT=${OUT:-out}; mkdir -p "$OUT"
R=$OUT/r; mkdir -p "$R"
M=${MODELS:-/tmp/glufuse-models}
DTYPES=${DTYPES:-"f16 f32"}
BUDGET=${BUDGET:-570}
LOG=$OUT/models.log
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# step NAME LIMIT CMD..: runs CMD with a time limit (cut to what is left of BUDGET), logs it.
step() {
  local name=$1 limit=$2; shift 2
  local l; l=$(left); [ "$l" -lt "$limit" ] && limit=$l
  if [ "$limit" -le 5 ]; then echo "## $name: skipped (no time left)" | tee -a "$LOG"; return 124; fi
  echo "## $name (limit ${limit} s, at $(($(date +%s) - T0)) s)" | tee -a "$LOG"
  local s; s=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1; local rc=$?
  echo "## $name: exit $rc after $(python3 -c "import time; print(f'{time.time() - $s:.1f}')") s" | tee -a "$LOG"
  return $rc
}
# bench NAME LIMIT MODEL ARGS..: glufuse bench with its table and JSON under $OUT.
bench() {
  local name=$1 limit=$2 model=$3; shift 3
  [ -f "$model" ] || { echo "## $name: no $model" | tee -a "$LOG"; return 1; }
  step "$name" "$limit" sh -c "$B bench $model $* --json $R/$name.json > $R/$name.md; rc=\$?; cat $R/$name.md; exit \$rc"
}
{
  echo "# $(date -u +%FT%TZ) $(uname -n)"; $B --version
  nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
} >>"$LOG" 2>&1
# The GPU's clocks every 100 ms, beside everything (to line up with bench-probe's Unix times).
nvidia-smi --query-gpu=timestamp,pstate,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv,nounits -lms 100 \
  >"$R/clocks.csv" 2>/dev/null &
SMI=$!
if [ "${PROBE:-0}" = 1 ]; then
  step probe 150 sh -c "$B bench-probe > $R/probe.txt 2>&1; rc=\$?; cat $R/probe.txt; exit \$rc"
fi
# (a) The models (dynseq and kvstep per dtype, one export process each, all at once), and
# PyTorch eager on them (first, alone on the GPU); or, GRAPHS=DIR, graphs brought back by an
# earlier run filled with random weights (seconds instead of minutes; no PyTorch timings).
mkdir -p "$M"
EXPORT=${EXPORT:-tests/data/models/export.py}
if [ -n "${GRAPHS:-}" ]; then
  for d in $DTYPES; do
    step "weights_$d" 60 python3 "${FILL:-benches/fill_weights.py}" "$GRAPHS/qwen05b_$d" "$M/qwen05b_$d"
  done
else
  PERF_DTYPES=$(echo "$DTYPES" | tr ' ' ,) PERF_FORMS=none step torch 90 python3 "$EXPORT" perf "$M/torch"
  cp "$M/torch/report_perf.json" "$R/report_perf.json" 2>/dev/null
  step export "${EXPORT_LIMIT:-200}" sh -c "
    for d in $DTYPES; do for f in dynseq kvstep; do
      PERF_TORCH=0 PERF_DTYPES=\$d PERF_FORMS=\$f OMP_NUM_THREADS=4 python3 $EXPORT perf $M/x-\$d-\$f > $R/export-\$d-\$f.log 2>&1 &
    done; done; wait
    for d in $DTYPES; do for f in dynseq kvstep; do
      mkdir -p $M/qwen05b_\$d && mv $M/x-\$d-\$f/qwen05b_\$d/* $M/qwen05b_\$d/; grep -h qwen05b $R/export-\$d-\$f.log | grep -v Warn
    done; done"
fi
# (b) glufuse: decode step (past 128, one new token) and prefill (batch 1, 128 tokens).
for d in $DTYPES; do
  bench "kvstep_$d" 75 "$M/qwen05b_$d/model_kvstep.onnx" --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7
  bench "dynseq_$d" 90 "$M/qwen05b_$d/model_dynseq.onnx" --dim batch=1 --dim seq=128 --reps 10 --samples 7
  if [ "${SAME:-1}" = 1 ] && [ "$d" = "${DTYPES%% *}" ]; then
    bench "kvstep_${d}_same" 75 "$M/qwen05b_$d/model_kvstep.onnx" --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7 --same-process
  fi
done
# (c) onnxruntime's WebGPU plugin EP on the same models (optional).
if [ "${ORT:-0}" = 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  step ort 120 sh -c "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site python3 ${ORT_SCRIPT:-benches/ort_models.py} $M $DTYPES > $R/ort.txt 2>&1; rc=\$?; cat $R/ort.txt; exit \$rc"
fi
kill "$SMI" 2>/dev/null
mkdir -p "$R/graphs" && (cd "$M" && for g in qwen05b_*/*.onnx; do [ -f "$g" ] && cp --parents "$g" "$R/graphs/"; done)
echo "# done after $(($(date +%s) - T0)) s" | tee -a "$LOG"
tar czf "$OUT/results.tgz" -C "$R" . && rm -rf "$R"
