# A generation loop's step with its caches kept on the GPU (Session::step with Feedback::caches)
# against the loop through the host (Session::run, --host), on the Qwen2-0.5B-sized f16 model:
# its dynamic-cache KV step from pasts of 128, 1024 and 4096 (12 prepared steps each), and a
# static-cache step of 1024 positions (24 steps), each twice, alternating.
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .carry/dynamic_cache_loop.xz > /tmp/dcl && chmod +x /tmp/dcl
xz -dc .carry/static_cache_loop.xz > /tmp/scl && chmod +x /tmp/scl
R=$OUT/r; M=/tmp/m; mkdir -p $R $M
python3 benches/fill_weights.py .carry/g $M > $R/fill.log 2>&1
G=$M/qwen05b_f16/model_kvstep.onnx
for rep in 1 2; do
  for P in 128 1024 4096; do
    for mode in fed host; do
      flag=""; [ $mode = host ] && flag=--host
      timeout 120 /tmp/dcl $G 12 $P --prepare $flag > $R/p${P}_${mode}_r$rep.txt 2>&1
      echo "dynamic past $P $mode r$rep rc=$? $(tail -1 $R/p${P}_${mode}_r$rep.txt)" >> $R/info.txt
    done
  done
done
S=$M/qwen05b_f16/model_staticstep.onnx
for rep in 1 2; do
  for mode in fed host; do
    flag=""; [ $mode = host ] && flag=--host
    timeout 100 /tmp/scl $S 24 --no-check $flag > $R/s1024_${mode}_r$rep.txt 2>&1
    echo "static 1024 $mode r$rep rc=$? $(tail -1 $R/s1024_${mode}_r$rep.txt)" >> $R/info.txt
  done
done
tar czf $OUT/r.tgz -C $R .
cat $R/info.txt
# Here first:
#   cargo build --release --example dynamic_cache_loop --example static_cache_loop
#   for e in dynamic_cache_loop static_cache_loop; do cp target/release/examples/$e /tmp/$e && strip /tmp/$e && xz -c /tmp/$e > .carry/$e.xz; done
#   .carry/g/qwen05b_f16/model_kvstep.onnx and model_staticstep.onnx: the graphs (without their weights,
#   which benches/fill_weights.py fills there) of `PERF_TORCH=0 PERF_DTYPES=f16 PERF_FORMS=kvstep,staticstep
#   PERF_STATIC_LEN=1024 python3 tests/data/models/export.py perf DIR`, run on the GPU machine (57 s for the
#   static step there)
# Device: run with carry [.gl, .carry]: bash benches/h200-fed.sh
