#!/usr/bin/env bash
# A/B of the [K, N] decode GEMV on the H100 (one device call): binaries built from the same
# tree with one change each, carried in .carry/ab/glufuse-{a,c,d}: a = main, c = four weight
# rows per iteration instead of two, d = c and split-K down to parts of 64 rows of k, from 2
# parts. Each times the Qwen2-0.5B decode GEMV shapes (synthetic gate/up graphs: fused, and
# the unfused plain GEMVs of the same shapes) and the whole f16 decode step (fused graph).
#   Then:  device run with carry [".gl", ".carry/ab", ".carry/13c"]: bash benches/h100-gemv-ab.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-out}; mkdir -p "$OUT"
M=/tmp/glufuse-models
timeout 60 python3 benches/fill_weights.py .carry/13c/graphs/qwen05b_f16 $M/qwen05b_f16 > "$OUT/fill.log" 2>&1
for v in a c d; do
  B=.carry/ab/glufuse-$v
  echo "## $v"
  timeout 60 $B bench --shapes 896x896,896x128,896x4864,4864x896 --rows 1 --dtypes f16 --reps 50 --samples 7 2>&1 | grep -E "^\| [0-9]"
  timeout 60 $B bench $M/qwen05b_f16/model_kvstep.onnx --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7 --part fused --in-process > "$OUT/kvstep-$v.md" 2>&1
  grep -E "GPU time per call|gemv µs|slowest dispatches, fused" "$OUT/kvstep-$v.md" | cut -c1-400
done 2>&1 | tee "$OUT/ab.md"
