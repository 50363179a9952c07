# onnxruntime-genai's builds of the Qwen2-0.5B-sized model beside PyTorch's dynamo exports, f32
# and f16, fused, on the GPU machine; then the genai tests natively (their binaries carried,
# where they are). (f16: the builder's CUDA build; its fp16 CPU build is another graph,
# com.microsoft RotaryEmbedding and MultiHeadAttention, no GroupQueryAttention.)
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .carry/glufuse.xz > /tmp/glufuse && chmod +x /tmp/glufuse
mkdir -p /tmp/g /tmp/m && for a in g g32 genai05; do tar xJf .carry/$a.tar.xz -C /tmp/g; done
python3 benches/fill_weights.py /tmp/g /tmp/m > $OUT/fill.log 2>&1
B=/tmp/glufuse
run() { n=$1; shift; echo "## $n"; timeout 150 $B bench "$@" --part fused --in-process --json $OUT/$n.json > $OUT/$n.md 2>&1; echo "exit $?"; grep -E "GPU time per call|dispatches \||fused gated|call latency" $OUT/$n.md; }
kv="--dim batch_size=1 --dim sequence_length=1 --dim past_sequence_length=128 --dim total_sequence_length=129 --reps 20 --samples 7"
pre="--dim batch_size=1 --dim sequence_length=128 --dim past_sequence_length=0 --dim total_sequence_length=128 --reps 10 --samples 7"
for d in f32 f16; do
  g=/tmp/m/genai_$d/model.onnx; y=/tmp/m/qwen05b_$d
  [ -f $g ] || { echo "no $g"; continue; }
  run dyn_kv_$d $y/model_kvstep.onnx --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7
  run genai_kv_$d $g $kv
  run dyn_pre_$d $y/model_dynseq.onnx --dim batch=1 --dim seq=128 --reps 10 --samples 7
  run genai_pre_$d $g $pre
done
# The genai graph's outputs against the interpreter, natively (random weights): a prompt and a step.
echo "## check"
timeout 200 $B run /tmp/m/genai_f32/model.onnx --check --dim batch_size=1 --dim sequence_length=6 --dim past_sequence_length=0 --dim total_sequence_length=6 2>&1 | grep -E "check|error|dispatch" | head -12
# The tests of the genai builds and of GroupQueryAttention, natively (REQUIRE_GPU=1).
if [ -f .carry/tests.tar.xz ]; then
  mkdir -p /work /tmp/t && ln -sfn "$PWD" /work/main && tar xJf .carry/tests.tar.xz -C /tmp/t
  REQUIRE_GPU=1 timeout 200 /tmp/t/models genai 2>&1 | tail -4
  REQUIRE_GPU=1 timeout 100 /tmp/t/onnx group_query 2>&1 | tail -3
fi
# Made here first: Qwen2Config(hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV heads,
# vocab 151936, max positions 4096, untied), random init, save_pretrained with a word-level
# tokenizer (tests/data/genai/export_genai.py's), then
#   python3 -m onnxruntime_genai.models.builder -m HF -i HF -o OUT32 -p fp32 -e cpu
#   python3 -m onnxruntime_genai.models.builder -m HF -i HF -o OUT16 -p fp16 -e cuda
# and the graphs without their weights (model.onnx, the data files left behind) as
# .carry/genai05.tar.xz (genai_f32/model.onnx, genai_f16/model.onnx); the dynamo graphs as for
# benches/h200-optimum.sh (.carry/g.tar.xz, .carry/g32.tar.xz); tests.tar.xz: the stripped
# `models` and `onnx` test binaries.
# Device: run with carry [.gl, .carry/glufuse.xz, .carry/g.tar.xz, .carry/g32.tar.xz,
#   .carry/genai05.tar.xz, .carry/tests.tar.xz]: bash benches/h200-genai.sh
