#!/usr/bin/env bash
# What ran on the H100 through the device tool (see ../shared/device/README.md): the default
# job, the kernel tests (every projection kernel and GEMM tiling against the interpreter),
# `glufuse run --check` on every test graph and ONNX model (fused and unfused), and the
# benchmark for both weight layouts. Results land in $OUT.
#   Here:  bash ../shared/device/prepare.sh; cargo build --release; cp target/release/glufuse .carry/
#          cargo test --release --test kernels --no-run   # copy the executable it names to .carry/kernels
#   Then:  device run with carry [".gl", ".carry"]: bash benches/h100.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=${GLUFUSE:-.carry/glufuse}
OUT=${OUT:-out}; mkdir -p "$OUT"
$B > "$OUT/default.txt" 2>&1; echo "default exit $?" >> "$OUT/default.txt"
if [ -x .carry/kernels ]; then REQUIRE_GPU=1 .carry/kernels > "$OUT/kernels.txt" 2>&1; echo "kernels exit $?" >> "$OUT/kernels.txt"; fi
{
for g in tests/graphs/*.json; do
  for seq in 3 40; do  # 6 rows: the GEMVs; 80 rows: the GEMMs
    for mode in "" --unfused; do $B run "$g" --check --dim batch=2 --dim seq=$seq $mode 2>&1 | grep -E "check|error"; echo "$(basename "$g") seq=$seq $mode exit ${PIPESTATUS[0]}"; done
  done
done
for m in llama_mlp_dynamo llama_mlp_ts phi3_mlp_dynamo gemma_mlp_dynamo glu_gelu_erf_dynamo glu_silu_bias_dynamo gpt2_mlp_ts; do
  for mode in "" --unfused; do $B run tests/data/onnx/$m.onnx --input x=tests/data/onnx/ref/$m.x.npy --check $mode 2>&1 | grep -E "check|error"; echo "$m $mode exit ${PIPESTATUS[0]}"; done
done
} > "$OUT/check.txt" 2>&1
timeout 270 $B bench --layout kn --reps 50 --samples 7 --json "$OUT/bench_kn.json" > "$OUT/bench_kn.md"
timeout 270 $B bench --layout nk --reps 50 --samples 7 --json "$OUT/bench_nk.json" > "$OUT/bench_nk.md"
grep -c "exit 0" "$OUT/check.txt"; cat "$OUT/bench_kn.md" "$OUT/bench_nk.md"
