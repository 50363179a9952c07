#!/usr/bin/env bash
# Issue #15 on the H100 through the device tool (see ../shared/device/README.md): the kernel
# tests with cooperative matrices on the device (every projection kernel against the
# interpreter; the cooperative-matrix GEMMs within the f16 bound, natively), the kernel choice
# on the device (`wgsl --device`), and fused against unfused at every configuration `bench`
# measures (3 shapes × M 1, 16, 128, 512 × f32, f16 × [K,N], [N,K]), plus f32 graphs under
# `--matmul-precision f16` and the fused f32 GEMM under the 256-thread tiling at M=128.
#   Here:  cargo build --release; cp target/release/glufuse .carry/
#          cargo test --release --test kernels --no-run   # copy the executable it names to .carry/kernels
#   Then:  device run with carry [".gl", ".carry"]: bash benches/h100-issue15.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=${GLUFUSE:-.carry/glufuse}
OUT=${OUT:-out}; mkdir -p "$OUT"
X="$OUT/extra.md"
{
  echo "## wgsl --device: Llama-3-8B gate/up, f16, [K,N], M=16 and 512"
  for m in 16 512; do
    $B synth --layers 1 --hidden 4096 --intermediate 14336 --batch $m --dtype f16 -o /tmp/l$m.json >/dev/null
    $B wgsl /tmp/l$m.json -o /tmp/w$m --device | grep -E "adapter|mlp"
  done
} > "$X" 2>&1
REQUIRE_GPU=1 timeout 120 .carry/kernels --nocapture > "$OUT/kernels.txt" 2>&1; echo "kernels exit $?" >> "$OUT/kernels.txt"
timeout 160 $B bench --layout kn --json "$OUT/bench_kn.json" > "$OUT/bench_kn.md" 2>&1; echo "exit $?" >> "$OUT/bench_kn.md"
timeout 160 $B bench --layout nk --json "$OUT/bench_nk.json" > "$OUT/bench_nk.md" 2>&1; echo "exit $?" >> "$OUT/bench_nk.md"
{
  for l in kn nk; do
    echo "## f32 graphs, --matmul-precision f16, $l"
    timeout 40 $B bench --layout $l --rows 16,128,512 --dtypes f32 --matmul-precision f16 2>&1
    echo "## fused f32, 256-thread GEMM tiling (8x16), M=128, $l (fused only, one process)"
    timeout 20 $B bench --in-process --part fused --layout $l --rows 128 --dtypes f32 --gemm-tiles 8x16 2>&1
  done
} >> "$X" 2>&1
tail -n 3 "$OUT/kernels.txt"; cat "$OUT/bench_kn.md" "$OUT/bench_nk.md"
