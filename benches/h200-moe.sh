#!/usr/bin/env bash
# A Mixtral-like mixture of experts (hidden 1024, 8 experts of 3584, top 2, 4 layers, vocab
# 32000, f16; exported with transformers' `batched_mm` experts, weights filled at random by
# fill_weights.py) timed by two glufuse builds: OLD (computes the experts' gathers) and NEW
# (reads the tables in place; BUILDS picks which, default "old new"). MODELS picks the models
# (default "mid"; "moe8" is the Qwen3-MoE-like one of `export.py moe8`: 64 experts, top 8);
# PROMPTS adds prompts of those lengths (e.g. "4": fewer pairs than two an expert).
# Device tool, carry [".gl", ".carry/glufuse.xz", ".carry/glufuse_new.xz", ".carry/mid.tar.xz"]
# (and ".carry/moe8.tar.xz"); results under $OUT. The graphs, here (moe8 alike):
#   python3 tests/data/models/export.py moe /tmp/moe && mkdir -p /tmp/mg/mid \
#     && cp /tmp/moe/mid/*.onnx /tmp/mg/mid/ && tar cJf .carry/mid.tar.xz -C /tmp/mg mid
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .carry/glufuse.xz > /tmp/old && xz -dc .carry/glufuse_new.xz > /tmp/new && chmod +x /tmp/old /tmp/new
mkdir -p /tmp/g /tmp/m
for MD in ${MODELS:-mid}; do tar xJf .carry/$MD.tar.xz -C /tmp/g; done
python3 benches/fill_weights.py /tmp/g /tmp/m
for MD in ${MODELS:-mid}; do
M=/tmp/m/$MD
for B in ${BUILDS:-old new}; do
  echo "## $MD $B decode"; timeout 150 /tmp/$B bench $M/model_kvstep.onnx --dim past=128 --dim new=1 --dim all=129 \
    --part fused --in-process --reps 20 --samples 7 --json $OUT/${MD}_${B}_kv.json > $OUT/${MD}_${B}_kv.md 2>&1; echo "exit $?"
  grep -E "GPU time per call|dispatches \||call latency|error" $OUT/${MD}_${B}_kv.md
  echo "## $MD $B prefill"; timeout 150 /tmp/$B bench $M/model_dynseq.onnx --dim batch=1 --dim seq=128 \
    --part fused --in-process --reps 10 --samples 7 --json $OUT/${MD}_${B}_pre.json > $OUT/${MD}_${B}_pre.md 2>&1; echo "exit $?"
  grep -E "GPU time per call|dispatches \||call latency|error" $OUT/${MD}_${B}_pre.md
  for S in ${PROMPTS:-}; do
    echo "## $MD $B prompt of $S"; timeout 150 /tmp/$B bench $M/model_dynseq.onnx --dim batch=1 --dim seq=$S \
      --part fused --in-process --reps 20 --samples 7 --json $OUT/${MD}_${B}_p$S.json > $OUT/${MD}_${B}_p$S.md 2>&1; echo "exit $?"
    grep -E "GPU time per call|dispatches \||error" $OUT/${MD}_${B}_p$S.md
  done
done
done
