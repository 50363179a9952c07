"""onnxruntime's WebGPU plugin EP (Dawn over Vulkan) on the models `benches/h100-models.sh`
exports: the decode step (past 128, one new token) and the 128-token prefill, per dtype.
Wall time of session.run (inputs in, every output out), median of 7 rounds of N runs after 3
warm-up runs. usage: ort_models.py MODELS_DIR DTYPE.. (the wheel installed as the anchors do:
../shared/device/anchors/ort_webgpu_ffn.py)."""
import sys, time, statistics, numpy as np, onnxruntime as ort
import onnxruntime_ep_webgpu as webgpu_ep

ort.register_execution_provider_library("webgpu", webgpu_ep.get_library_path())
dev = next((d for d in ort.get_ep_devices() if d.ep_name == webgpu_ep.get_ep_name()), None)
print("ort", ort.__version__, "webgpu ep device:", dev and (dev.ep_name, dev.device.vendor), flush=True)


def feeds(sess, dims, rng):
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else dims[d] for d in i.shape]
        if i.name == "input_ids":
            out[i.name] = rng.integers(0, 151936, shape).astype(np.int64)
        elif "int64" in i.type:
            out[i.name] = np.ones(shape, np.int64)
        else:
            dt = np.float16 if "float16" in i.type else np.float32
            out[i.name] = rng.standard_normal(shape).astype(dt)
    return out


def bench(path, dims, n):
    so = ort.SessionOptions()
    so.add_provider_for_devices([dev], {})
    t0 = time.perf_counter()
    s = ort.InferenceSession(path, sess_options=so)
    made = time.perf_counter() - t0
    f = feeds(s, dims, np.random.default_rng(0))
    for _ in range(3):
        s.run(None, f)
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            s.run(None, f)
        ts.append((time.perf_counter() - t0) / n * 1e3)
    return statistics.median(ts), made


root = sys.argv[1]
for dt in sys.argv[2:]:
    for form, dims, n in (("kvstep", {"past": 128, "new": 1, "all": 129}, 20), ("dynseq", {"batch": 1, "seq": 128}, 10)):
        p = f"{root}/qwen05b_{dt}/model_{form}.onnx"
        try:
            ms, made = bench(p, dims, n)
            print(f"ort-webgpu {dt} {form} {dims}: {ms:.2f} ms per run (session made in {made:.1f} s)", flush=True)
        except Exception as e:
            print(f"ort-webgpu {dt} {form}: failed: {str(e)[:400]}", flush=True)
