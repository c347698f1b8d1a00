#!/usr/bin/python3
"""Throughput of rwkvd end to end (not a test): N channels x T tokens each, sent as TOKENS
messages over ipc://, timed until every token is fed (STATUS tokens_total), next to the
engine-only figure of rwkv-bench for the same batch size (no vocabulary head in either:
ingest rows need only the state).

  tests/daemon/bench_rwkvd.py --model M.pth [--channels 1,16,64] [--tokens 256] [--threads 2]
  tests/daemon/bench_rwkvd.py --model M.pth --latency [--channels 16] [--rounds 20]

--latency: a classify profile (two one-token labels, empty suffix) on every channel; each
round sends one short event to every channel at once and waits for all CLASS results;
prints p50/p99 of ingest-to-publish latency (not saturated: one event per channel in flight).

Needs build/daemon/rwkvd and build/tools/rwkv-bench (or --rwkvd / --rwkv-bench).
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import zmq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--channels", default="1,16,64")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rwkvd", default="build/daemon/rwkvd")
    ap.add_argument("--rwkv-bench", default="build/tools/rwkv-bench")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    if a.latency:
        return latency(a)
    print("| channels | rwkvd tokens/s | engine tokens/s (rwkv-bench, no logits) | daemon/engine |")
    print("|---|---|---|---|")
    for n in [int(x) for x in a.channels.split(",")]:
        d = tempfile.mkdtemp(prefix="rwkvd-b")
        conf = os.path.join(d, "c.yaml")
        with open(conf, "w") as f:
            f.write("model: {path: %s, vocab: bytes, threads: %d, state_slots: %d, max_batch: %d}\n"
                    "endpoints: {ingest: ipc://%s/i, publish: ipc://%s/p, control: ipc://%s/c}\n"
                    "limits: {max_queue_tokens: %d}\nstate_dir: %s\n"
                    % (a.model, a.threads, n + 2, n, d, d, d, a.tokens + 1, d))
        p = subprocess.Popen([a.rwkvd, "-c", conf], stderr=subprocess.DEVNULL)
        ctx = zmq.Context()
        try:
            ctl = ctx.socket(zmq.REQ)
            ctl.connect("ipc://%s/c" % d)

            def status():
                ctl.send_multipart([b"RWKV1", b"STATUS"])
                if not ctl.poll(30000):
                    raise SystemExit("no STATUS reply")
                return json.loads(ctl.recv_multipart()[2])

            for _ in range(200):
                if os.path.exists(os.path.join(d, "c")):
                    break
                time.sleep(0.05)
            status()
            s = ctx.socket(zmq.DEALER)
            s.connect("ipc://%s/i" % d)
            vocab = status()["model"]["n_vocab"]
            ids = (np.arange(a.tokens, dtype="<u4") * 7 + 1) % min(vocab, 256)
            t0 = time.time()
            for c in range(n):
                s.send_multipart([b"RWKV1", b"TOKENS", b"b%d" % c, b"bench", b"1", ids.tobytes()])
            for c in range(n):
                if not s.poll(30000):
                    raise SystemExit("no ACK")
                r = s.recv_multipart()
                if r[1] != b"ACK":
                    raise SystemExit("refused: %r" % r)
            want = n * (a.tokens - 1)  # each channel's last token is held until an output needs it
            while status()["tokens_total"] < want:
                time.sleep(0.02)
            dt = time.time() - t0
        finally:
            p.terminate()
            p.wait()
            ctx.destroy(linger=0)
            shutil.rmtree(d, ignore_errors=True)
        out = subprocess.run([a.rwkv_bench, "--model", a.model, "--batch", str(n), "--threads", str(a.threads),
                              "--no-logits"], capture_output=True, text=True).stdout
        eng = None
        rows = [ln.split() for ln in out.splitlines() if ln and not ln.startswith(("#", "model"))]
        if rows and len(rows[-1]) > 5:
            eng = float(rows[-1][5])  # columns: model weights B thr step_ms tok/s ...
        rate = want / dt
        print("| %d | %.0f | %s | %s |" % (n, rate, "%.0f" % eng if eng else "?\n" + out,
                                          "%.2f" % (rate / eng) if eng else "?"))


def latency(a):
    print("| channels | events | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for n in [int(x) for x in a.channels.split(",")]:
        d = tempfile.mkdtemp(prefix="rwkvd-l")
        conf = os.path.join(d, "c.yaml")
        with open(conf, "w") as f:
            f.write("model: {path: %s, vocab: bytes, threads: %d, state_slots: %d, max_batch: %d}\n"
                    "endpoints: {ingest: ipc://%s/i, publish: ipc://%s/p, control: ipc://%s/c}\n"
                    "state_dir: %s\ntasks:\n  default_profile: yn\n  profiles:\n    yn:\n"
                    "      kind: classify_labels\n      labels: [{name: y, text: \"y\"}, {name: n, text: \"n\"}]\n"
                    % (a.model, a.threads, n + 2, n, d, d, d, d))
        p = subprocess.Popen([a.rwkvd, "-c", conf], stderr=subprocess.DEVNULL)
        ctx = zmq.Context()
        lat = []
        try:
            for _ in range(200):
                if os.path.exists(os.path.join(d, "c")):
                    break
                time.sleep(0.05)
            time.sleep(0.2)
            sub = ctx.socket(zmq.SUB)
            sub.connect("ipc://%s/p" % d)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            s = ctx.socket(zmq.DEALER)
            s.connect("ipc://%s/i" % d)
            time.sleep(0.3)
            for r in range(a.rounds + 1):
                sent = {}
                for c in range(n):
                    sent[b"l%d" % c] = time.perf_counter()
                    s.send_multipart([b"RWKV1", b"TEXT", b"l%d" % c, b"bench", b"%d" % (r + 1), b"event %d" % r])
                got = 0
                while got < n:
                    if not sub.poll(30000):
                        raise SystemExit("no CLASS")
                    m = sub.recv_multipart()
                    if m[2] == b"CLASS":
                        if r > 0:  # round 0 warms up (channel creation)
                            lat.append((time.perf_counter() - sent[m[0]]) * 1000)
                        got += 1
                while s.poll(0):
                    s.recv_multipart()
        finally:
            p.terminate()
            p.wait()
            ctx.destroy(linger=0)
            shutil.rmtree(d, ignore_errors=True)
        lat.sort()
        print("| %d | %d | %.2f | %.2f |" % (n, len(lat), lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))


if __name__ == "__main__":
    main()
