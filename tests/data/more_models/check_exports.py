"""Runs every export in a folder (as export.py writes them: NAME.onnx beside NAME.TAG.INPUT.npy
and NAME.TAG.out.OUTPUT.npy) through `glufuse run --check`, fused and unfused, and compares
every output with onnxruntime's: within 1e-4 of the largest value (2e-2 for a model named
`*f16*`), NaNs and shapes included. Prints a line per reference set and exits 1 if any set
fails. The sweeps of tests/data/more_models/README.md are its runs, e.g.
    MORE_ATTN=sdpa python3 ../models/export.py more /tmp/sdpa
    python3 check_exports.py /tmp/sdpa target/release/glufuse
usage: check_exports.py FOLDER [GLUFUSE] [NAME_PART..]  (only the models whose name holds one)"""
import glob, os, subprocess, sys, tempfile
import numpy as np

folder = sys.argv[1]
binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/glufuse"
only = sys.argv[3:]
failed, sets, worst = 0, 0, {}
with tempfile.TemporaryDirectory() as tmp:
    for model in sorted(glob.glob(os.path.join(folder, "*.onnx"))):
        name = os.path.basename(model)[:-5]
        if only and not any(o in name for o in only):
            continue
        files = glob.glob(os.path.join(folder, f"{name}.*.npy"))
        for tag in sorted({os.path.basename(f)[len(name) + 1:].split(".")[0] for f in files}):
            ins = sorted(f for f in glob.glob(os.path.join(folder, f"{name}.{tag}.*.npy")) if ".out." not in f)
            refs = sorted(glob.glob(os.path.join(folder, f"{name}.{tag}.out.*.npy")))
            tol = 2e-2 if "f16" in name else 1e-4
            line = []
            for mode in ("fused", "unfused"):
                args = [binary, "run", model, "--check"] + (["--unfused"] if mode == "unfused" else [])
                args += [a for f in ins for a in ("--input", f"{f.split('.')[-2]}={f}")]
                outs = {f.split(".out.")[1][:-4]: f for f in refs}
                args += [a for o in outs for a in ("--output", f"{o}={os.path.join(tmp, o + '.npy')}")]
                r = subprocess.run(args, capture_output=True, text=True, timeout=600)
                if r.returncode != 0:
                    line.append(f"{mode} FAILED (exit {r.returncode}): {(r.stderr.strip().splitlines() or [''])[-1][:300]}")
                    failed += 1
                    continue
                rel = 0.0
                for o, ref in outs.items():
                    got, want = np.load(os.path.join(tmp, o + ".npy")).astype(np.float64), np.load(ref).astype(np.float64)
                    if got.shape != want.shape or not np.array_equal(np.isnan(got), np.isnan(want)):
                        rel = float("inf")
                        break
                    ok = ~np.isnan(want)
                    rel = max(rel, float(np.abs(got[ok] - want[ok]).max(initial=0) / max(1e-12, np.abs(want[ok]).max(initial=0))))
                if rel > tol:
                    failed += 1
                worst[mode] = max(worst.get(mode, 0.0), rel)
                line.append(f"{mode} {'ok' if rel <= tol else 'MISMATCH'} {rel:.1e}")
            sets += 1
            print(f"{name} {tag}: " + " | ".join(line), flush=True)
print(f"{sets} reference sets, {failed} failed runs; worst relative error {worst}")
sys.exit(1 if failed else 0)
