#!/usr/bin/env python3
"""Disassembles one kernel's machine code out of NVIDIA's Vulkan pipeline-cache data.

`cargo run --release --example pipeline_stats -- --dump DIR ...` writes each kernel's
pipeline-cache data (`DIR/LABEL_KERNEL.pipeline_cache.bin`) and prints its "Binary Size".
NVIDIA's driver (580) stores, after a header, a zstd frame; inside, its own container ends the
kernel's code with a run of NOPs. This script takes the SIZE bytes that end there and
disassembles them as raw SM90 code:

    python3 benches/sass.py DIR/fused_mul.pipeline_cache.bin 41600 > fused_mul.sass

Needs `nvdisasm` (CUDA; the `triton` Python wheel ships one: `--nvdisasm PATH`) and the
`zstd` command or the `zstandard` module. The container's format is not documented: the
code's end is found by its padding, and a wrong SIZE shows as a first instruction that is not
the kernel's `S2R ..., SR_TID.X` (or as nvdisasm refusing the bytes).
"""
import argparse
import subprocess
import sys
import tempfile

ZSTD_MAGIC = bytes.fromhex("28b52ffd")
# SM90's NOP with its usual control bits, as the padding after a kernel's last instruction.
NOP = bytes.fromhex("18790000000000000000000000c00f00")


def decompress(frame: bytes) -> bytes:
    try:
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(frame)
    except ImportError:
        return subprocess.run(["zstd", "-d", "-c"], input=frame, capture_output=True, check=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", help="a pipeline_cache.bin written by pipeline_stats --dump")
    ap.add_argument("size", type=int, help="the kernel's Binary Size, in bytes")
    ap.add_argument("--nvdisasm", default="nvdisasm")
    ap.add_argument("--arch", default="SM90")
    a = ap.parse_args()
    blob = open(a.cache, "rb").read()
    at = blob.find(ZSTD_MAGIC)
    if at < 0:
        print(f"{a.cache}: no zstd frame (not NVIDIA's pipeline-cache data?)", file=sys.stderr)
        return 1
    raw = decompress(blob[at:])
    end = raw.rfind(NOP)
    if end < 0 or end + 16 < a.size:
        print(f"{a.cache}: no NOP padding to end {a.size} bytes of code", file=sys.stderr)
        return 1
    end += 16
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(raw[end - a.size : end])
        f.flush()
        return subprocess.run([a.nvdisasm, "-b", a.arch, f.name]).returncode


if __name__ == "__main__":
    sys.exit(main())
