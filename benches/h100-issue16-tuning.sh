#!/usr/bin/env bash
# Issue #16's tuning run on the H100 (one device call, carry [".gl", ".carry/16"]): the 4-bit
# kernel sweep natively, decode variants at Llama-3-8B gate/up, the q4 table. Here: build
# glufuse in release and `cargo test --release --test q4 --no-run`, strip both into .carry/16/
# (glufuse, q4) of the checkout the device tool sends, with this file as .carry/16/run.sh.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=.carry/16/glufuse
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > "$OUT/gpu.txt" 2>&1
# 1. the 4-bit kernels against the interpreter, natively (coop included)
REQUIRE_GPU=1 timeout 40 .carry/16/q4 q4_kernels_match_the_interpreter --nocapture > "$OUT/kernels.txt" 2>&1; echo "kernels exit $?" >> "$OUT/kernels.txt"
tail -3 "$OUT/kernels.txt"
# 2. decode variants at Llama-3-8B gate/up, fused, each in a fresh process
{
for v in magic:1 magic:2 magic:4 convert:2; do
  timeout 15 $B bench --in-process --part fused --shapes 4096x14336 --rows 1 --dtypes q4 --q4-unpack ${v%:*} --q4-cols ${v#*:} --reps 50 --samples 7 2>&1 | grep -E "^copy|^\| 4096"
done
timeout 15 $B bench --in-process --part fused --shapes 4096x14336 --rows 1 --dtypes f16 --reps 50 --samples 7 2>&1 | grep -E "^\| 4096"
} > "$OUT/variants.md" 2>&1
cat "$OUT/variants.md"
# 3. the q4 table: three shapes, M 1/16/128/512, fused and unfused each in a fresh process
timeout 70 $B bench --shapes 4096x14336,2048x11008,896x4864 --dtypes q4 --reps 20 --samples 5 --json "$OUT/q4.json" > "$OUT/q4.md" 2> "$OUT/q4.err"
cat "$OUT/q4.md"; grep "^|" "$OUT/q4.err"
