# The optimum export of the Qwen2-0.5B-sized model beside PyTorch's dynamo export, f32, on the GPU machine.
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .carry/glufuse.xz > /tmp/glufuse && chmod +x /tmp/glufuse
mkdir -p /tmp/g /tmp/m && tar xJf .carry/g32.tar.xz -C /tmp/g && tar xJf .carry/qopt.tar.xz -C /tmp/g
python3 benches/fill_weights.py /tmp/g /tmp/m
B=/tmp/glufuse
o=/tmp/m/qwen05b_opt/model.onnx; d=/tmp/m/qwen05b_f32
run() { n=$1; shift; echo "## $n"; timeout 120 $B bench "$@" --part fused --in-process --json $OUT/$n.json > $OUT/$n.md 2>&1; echo "exit $?"; grep -E "GPU time per call|dispatches \||fused gated|call latency" $OUT/$n.md; }
run dyn_kv $d/model_kvstep.onnx --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7
run opt_kv $o --dim batch_size=1 --dim sequence_length=1 --dim past_sequence_length=128 --reps 20 --samples 7
run dyn_pre $d/model_dynseq.onnx --dim batch=1 --dim seq=128 --reps 10 --samples 7
run opt_pre $o --dim batch_size=1 --dim sequence_length=128 --dim past_sequence_length=0 --reps 10 --samples 7
run dyn_kv2 $d/model_kvstep.onnx --dim past=128 --dim new=1 --dim all=129 --reps 20 --samples 7
run opt_kv2 $o --dim batch_size=1 --dim sequence_length=1 --dim past_sequence_length=128 --reps 20 --samples 7
# Made here first (optimum-onnx 0.1.0 needs transformers 4.57: a venv over the system's torch):
#   python3 -m venv --system-site-packages /tmp/ovenv
#   /tmp/ovenv/bin/pip install optimum-onnx==0.1.0 transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2
#   /tmp/ovenv/bin/python: Qwen2Config(hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV heads,
#     vocab 151936, max positions 4096, tied embeddings), random init, save_pretrained, then
#     optimum.exporters.onnx.main_export(DIR, output=OUT, task="text-generation-with-past")
#   mkdir -p /tmp/qo/qwen05b_opt && cp OUT/model.onnx /tmp/qo/qwen05b_opt/ && tar cJf .carry/qopt.tar.xz -C /tmp/qo qwen05b_opt
#   (the dynamo graphs: benches/h100-models.sh's results.tgz, graphs/qwen05b_f32 as .carry/g32.tar.xz)
# Device: run with carry [.gl, .carry/glufuse.xz, .carry/g32.tar.xz, .carry/qopt.tar.xz, benches/h200-optimum.sh]:
#   bash benches/h200-optimum.sh
