#!/usr/bin/env bash
# Issue #16's 4-bit decode GEMV on the H100 (one device call): variants of `gemv_q4` at the
# q4 shapes, M=1, each a fused-only bench in a fresh process. One binary whose codegen read
# the experiment variable GLUFUSE_Q4X (u<U>: chunks per lane per loop iteration; pf: the next
# iteration's weights and scales loaded before this one's math; wg<T>: threads per workgroup;
# r<R>: output features per 32 lanes; wm: the word-major body, now the only one); the
# variable is gone from the committed code. The first run's list was VARIANTS="base u2 u4 pf
# pf,u2 wg128 wg64 r8 u2,wg128 pf,wg128 r2,u2 r2,pf r2,pf,u2 r8,u2 r1,u4 r2,u4", the second's
# the default below; benches/results/h100-2026-11-26d-q4-decode.md has both tables.
#   Here:  build glufuse in release with the variable read in gemv_q4, strip it into
#          .carry/q4b/glufuse of the checkout the device tool sends, this file beside it.
#   Then:  device run with carry [".gl", ".carry/q4b"]: bash .carry/q4b/run.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-out}; mkdir -p "$OUT"
B=${GLUFUSE:-.carry/q4b/glufuse}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
for v in ${VARIANTS:-base u2,wg128 u4,wg128 u4,wg64 u2,wg64 wm wm,wg128 wm,u2,wg128 wm,u4,wg128 wm,pf,wg128 pf,wg64 wm,r8,wg128 wm,r8,wg64 pf,u2,wg64 wm,u2,wg64 base}; do
  export GLUFUSE_Q4X=$v
  [ "$v" = base ] && export GLUFUSE_Q4X=
  echo "## $v"
  timeout 30 $B bench --in-process --part fused --shapes 4096x14336,2048x11008,896x4864 --rows 1 --dtypes q4 --reps 50 --samples 7 2>&1 | grep -E "^copy|^\| [0-9]" | cut -d'|' -f1-5,10-12
done 2>&1 | tee "$OUT/variants.md"
