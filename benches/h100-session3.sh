#!/usr/bin/env bash
# The third sitting's H100 run (one device call): the kernel tests natively (the split-K
# cooperative GEMM and the 256-row fused 4-bit tiling run natively nowhere else), the 4-bit
# prefill fused against unfused, and the whole Qwen2-0.5B-sized f16 model again.
#   Here:  cargo build --release; cargo test --release --no-run --test kernels --test q4
#          mkdir -p .carry/r3; copy target/release/glufuse and the two test binaries
#          (target/release/deps/{kernels,q4}-*) to .carry/r3/{glufuse,kernels,q4}; strip them
#   Then:  device run with carry [".gl", ".carry/r3", ".carry/13c"]: bash benches/h100-session3.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
D=.carry/r3
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/gpu.txt" 2>&1
# 1. the cooperative GEMM (split-K included) and the 4-bit kernels against the interpreter
REQUIRE_GPU=1 timeout 120 $D/kernels coop_gemm --nocapture > "$OUT/kernels.txt" 2>&1; echo "kernels exit $?" >> "$OUT/kernels.txt"
REQUIRE_GPU=1 timeout 90 $D/q4 q4_kernels_match_the_interpreter --nocapture > "$OUT/q4-kernels.txt" 2>&1; echo "q4 kernels exit $?" >> "$OUT/q4-kernels.txt"
tail -4 "$OUT/kernels.txt" "$OUT/q4-kernels.txt"
# 2. 4-bit prefill, fused and unfused each in a fresh process
timeout 90 $D/glufuse bench --shapes 4096x14336,2048x11008 --rows 128,512 --dtypes q4 --reps 20 --samples 5 \
  --json "$OUT/q4-prefill.json" > "$OUT/q4-prefill.md" 2> "$OUT/q4-prefill.err"
cat "$OUT/q4-prefill.md"
# 3. the whole model (f16), as benches/h100-models.sh with the graphs of the first sitting
OUT=$OUT/models GLUFUSE=$D/glufuse GRAPHS=.carry/13c/graphs DTYPES=f16 SAME=0 BUDGET=200 bash benches/h100-models.sh > /dev/null 2>&1
grep -E "^\| \*\*GPU|^\| dispatches|call latency|readback|^## " "$OUT/models/models.log"
