#!/usr/bin/env bash
# The [K, N] decode GEMV's tiling on small grids, on the H100 (one device call). One binary,
# built with benches/results/h100-2026-11-26d-gemv-small.patch applied (main does not read
# these variables: it has the tiling chosen from this run), whose codegen reads two
# experiment variables: GLUFUSE_GEMV_SMALL (0: at least 8 column
# groups of 16 bytes per workgroup, as before; S: fewer groups per workgroup, down to one,
# until the grid has S workgroups) and GLUFUSE_GEMV_UNROLL (weight rows per thread and loop
# iteration). Each variant times the Qwen2-0.5B and Llama-3-8B decode GEMV shapes (synthetic
# gate/up graphs) and the whole Qwen2-0.5B-sized f16 decode step (fused graph).
#   Then:  device run with carry [".gl", ".carry/r6", ".carry/13c"]: bash benches/h100-gemv-small.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-out}; mkdir -p "$OUT"
B=${GLUFUSE:-.carry/r6/glufuse}
M=/tmp/glufuse-models
timeout 60 python3 benches/fill_weights.py .carry/13c/graphs/qwen05b_f16 $M/qwen05b_f16 > "$OUT/fill.log" 2>&1
for v in ${VARIANTS:-"0 2" "128 2" "128 4" "256 2" "256 4"}; do
  set -- $v
  export GLUFUSE_GEMV_SMALL=$1 GLUFUSE_GEMV_UNROLL=$2
  echo "## small $1 unroll $2"
  timeout 90 $B bench --shapes 896x896,896x128,896x1152,896x4864,4864x896,4096x14336,14336x4096 --rows 1 --dtypes f16 --reps 50 --samples 7 2>&1 | grep -E "^\| [0-9]"
  timeout 60 $B bench $M/qwen05b_f16/model_kvstep.onnx --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7 --part fused --in-process --json "$OUT/kvstep-$1-$2.json" > "$OUT/kvstep-$1-$2.md" 2>&1
  grep -E "GPU time per call|gemv µs|split-sum" "$OUT/kvstep-$1-$2.md" | cut -c1-300
done 2>&1 | tee "$OUT/small.md"
