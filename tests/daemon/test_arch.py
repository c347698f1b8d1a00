#!/usr/bin/python3
"""The model's generation as the daemon reports it.

Usage: test_arch.py status   with RWKVD_TEST_MODEL set (as test_rwkvd.py) and RWKVD_TEST_ARCH
the generation rwkv_arch_name() gives for that model ("RWKV-7", "RWKV-6", "RWKV-5.2", ...).

  status   STATUS "model" carries "arch" (PROTOCOL.md §10.3) equal to RWKVD_TEST_ARCH next to
           the shape (RWKV-4: 0 heads of size 0), and the start-up log line names it too
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import Daemon, check  # noqa: E402


def test_status():
    want = os.environ.get("RWKVD_TEST_ARCH", "RWKV-7")
    d = Daemon()
    try:
        m = d.control_json(b"STATUS")["model"]
        check(m.get("arch") == want, "STATUS model.arch %r, expected %r: %r" % (m.get("arch"), want, m))
        if want == "RWKV-4":
            check(m["n_head"] == 0 and m["head_size"] == 0, "RWKV-4 has no heads: %r" % m)
        else:
            check(m["n_head"] * m["head_size"] == m["n_embd"], "heads x head size = width: %r" % m)
        check(("model %s: %s," % (T.MODEL, want)) in d.logtext(), "the start-up log names the generation:\n"
              + d.logtext())
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_arch.py")
