#!/usr/bin/env bash
# 4-bit gate/up on the H100 beside onnxruntime's WebGPU EP, in one device call (issue #16):
# glufuse's q4 rows (fused and unfused, each in a fresh process, the copy kernel's bandwidth
# beside) and the anchor script ../shared/device/anchors/ort_webgpu_ffn.py, carried unchanged
# in .carry/anchors/ (ANCHOR= names another place).
#   Then:  device run with carry [".gl", ".carry/r4", ".carry/anchors", ".whl"]:
#          bash benches/h100-q4-vs-ort.sh
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
B=${GLUFUSE:-.carry/r4/glufuse}
timeout 150 $B bench --shapes 4096x14336,2048x11008,896x4864 --rows 1,16,128 --dtypes q4 --reps 20 --samples 5 \
  --json "$OUT/glufuse-q4.json" > "$OUT/glufuse-q4.md" 2> "$OUT/glufuse-q4.err"
cat "$OUT/glufuse-q4.md"
ANCHOR=${ANCHOR:-.carry/anchors/ort_webgpu_ffn.py}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl > "$OUT/pip.log" 2>&1
PYTHONPATH=/tmp/site timeout 240 python3 "$ANCHOR" > "$OUT/ort.txt" 2>&1
grep -E "^ort-webgpu|failed" "$OUT/ort.txt"
