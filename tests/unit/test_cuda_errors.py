#!/usr/bin/env python3
"""test_cuda_errors — what the CUDA backend says when it cannot run, through rwkv-run.

Usage: test_cuda_errors.py RWKV_RUN MODEL.pth
On the emulated backend (cuda-emu) the emulator's switches stand in for the hardware:
SIMT_NO_DEVICE=1 is a machine without a GPU, SIMT_MEM_GIB a card too small for the model.
Each case must fail with exit status 1 and one line naming the backend and the reason; a
normal run must succeed and match the cpu backend's logits. The real `cuda` backend on a
machine without a usable GPU must be refused with the runtime's reason (skipped where a
GPU is present or the module is not built)."""
import os
import struct
import subprocess
import sys
import tempfile

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)
    else:
        print("ok:", what)


def run(args, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run(args, capture_output=True, text=True, env=e, timeout=120)


def main():
    rwkv_run, model = sys.argv[1], sys.argv[2]
    base = [rwkv_run, "--model", model, "--tokens", "1,2,3"]

    r = run(base + ["--backend", "cuda-emu"], SIMT_NO_DEVICE="1")
    check(r.returncode == 1 and "cuda-emu" in r.stderr and "no usable GPU" in r.stderr
          and r.stderr.count("\n") == 1, "no device: refused with the reason (%r)" % r.stderr.strip())

    r = run(base + ["--backend", "cuda-emu"], SIMT_MEM_GIB="0.001")
    check(r.returncode == 1 and "out of device memory" in r.stderr and "MiB free" in r.stderr
          and "need" in r.stderr, "too little device memory: how much needed and free (%r)" % r.stderr.strip())

    with tempfile.TemporaryDirectory() as d:
        outs = {}
        for be in ("cpu", "cuda-emu"):
            path = os.path.join(d, be + ".f32")
            r = run(base + ["--backend", be, "--dump-logits", path])
            check(r.returncode == 0, "%s runs (%r)" % (be, r.stderr.strip()))
            with open(path, "rb") as f:
                data = f.read()
            outs[be] = struct.unpack("<%df" % (len(data) // 4), data)
        a, b = outs["cpu"], outs["cuda-emu"]
        diff = max(abs(x - y) for x, y in zip(a, b)) if a and len(a) == len(b) else float("inf")
        check(diff <= 1e-4, "cuda-emu logits equal cpu's within 1e-4 (max |diff| %.3g)" % diff)

    r = run([rwkv_run, "--backend", "list"])
    line = r.stdout.split("cuda ")[1].split("\n")[0] if "cuda " in r.stdout else ""
    if "unavailable" in line and "not built" not in line:
        r = run(base + ["--backend", "cuda"])
        check(r.returncode == 1 and "no usable GPU" in r.stderr, "cuda without a GPU: the reason (%r)" % r.stderr.strip())
    else:
        print("skip: the cuda module is not built here or a GPU is present")

    print("test_cuda_errors: %d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
