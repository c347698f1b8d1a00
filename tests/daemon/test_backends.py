#!/usr/bin/python3
"""rwkvd end to end on the CUDA backend's code: `model.backend: cuda-emu` runs the CUDA
backend's sources on the SIMT emulator (tests/simt), so these tests prove, on a machine
without a GPU, that the daemon drives that backend through its whole path over real sockets.
They are not a GPU test: the real `cuda` module shares the sources but not the compiler,
cuBLAS or the hardware.

Usage: test_backends.py NAME (serve | portable | crash | no_device).
Environment: as test_rwkvd.py, plus RWKV_BACKEND_DIR (where librwkv-cuda-emu.so is).
What "equal" means here: the emulated backend's floating-point order differs from the CPU
backend's (cuBLAS-style GEMM tiling), so states and probabilities across backends agree
within a tolerance (f32 weights: 1e-4 of the largest magnitude, what test_backend_cmp
calibrated on cuda-emu); within one backend, kill -9 and replay from the input log must give
the same bytes, as on the CPU backend. Every receive has a timeout (test_rwkvd.recv)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
import test_durable as D  # noqa: E402
from test_rwkvd import Daemon, Fail, check, expect_reply, next_pub, send  # noqa: E402

np = T.np
EMU = "cuda-emu"
REL_TOL = 1e-4  # of the largest |value| of the reference state, f32 weights
# small batches: long messages are applied over several jobs, so restarts land mid-message;
# few slots: the emulator allocates every slot's state on its simulated device
KW = dict(max_batch=4, slots=8)


def emu_available():
    """Skip (77) where librwkv-cuda-emu.so was not built or cannot run."""
    out = subprocess.run([T.RWKV_RUN, "--backend", "list"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    line = next((x for x in out.splitlines() if x.split()[:1] == [EMU]), "")
    if " available" not in line:
        print("skip: backend %s not available here: %r" % (EMU, line))
        sys.exit(77)
    return out


def set_backend(d, name):
    """Rewrite the stopped daemon's model.backend (Daemon(backend=...) wrote the line)."""
    with open(d.conf) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^  backend: \S+$", "  backend: " + name, text)
    check(n == 1, "config has one model.backend line")
    with open(d.conf, "w") as f:
        f.write(text)
    d.backend = name


def status_backend(d):
    return d.control_json(b"STATUS")["backend"]


def state_diff(got, ref):
    """max |got - ref| / max |ref| over two snapshot payloads (portable layout: fp32 LE)."""
    g = np.frombuffer(got, dtype="<f4").astype(np.float64)
    r = np.frombuffer(ref, dtype="<f4").astype(np.float64)
    check(g.shape == r.shape and np.all(np.isfinite(g)), "state sizes %r %r / finite" % (g.shape, r.shape))
    scale = np.max(np.abs(r))
    check(scale > 0, "reference state is all zero: nothing was fed")
    return float(np.max(np.abs(g - r)) / scale)


def compare_close(got, ref, what):
    """Same tokens_seen and held/profile metadata per channel, states within REL_TOL; returns
    the largest relative difference seen."""
    worst = 0.0
    for c in D.CHANNELS:
        g, r = got[c], ref[c]
        check(g[1] == r[1], "%s: %s tokens_seen %d, reference %d" % (what, c, g[1], r[1]))
        check(g[2] == r[2], "%s: %s held/profile %r, reference %r" % (what, c, g[2], r[2]))
        rel = state_diff(g[0], r[0])
        check(rel <= REL_TOL, "%s: %s state differs from the reference by %.3g of its largest value (bound %g)" %
              (what, c, rel, REL_TOL))
        worst = max(worst, rel)
    return worst


def drain(d, chans):
    deadline = time.time() + 30
    while any(d.control_json(b"INFO", c)["queued_messages"] for c in chans):
        check(time.time() < deadline, "queues not drained")
        time.sleep(0.02)


# ---- a. serving on cuda-emu -------------------------------------------------------------

def serve(backend, events, gen_channel):
    """Feed events ({channel: [text]}) under the sev profile, collect each CLASS, then a greedy
    24-token GEN on gen_channel. Returns (STATUS backend, {channel: [probs]}, END)."""
    d = Daemon(profiles=T.SEV_PROFILE, default_profile="sev", backend=backend, **KW)
    try:
        got_backend = status_backend(d)
        sub = d.sub(b"")
        s = d.dealer()
        probs = {c: [] for c in events}
        seq = 0
        for i in range(max(len(v) for v in events.values())):
            for c, evs in events.items():
                if i < len(evs):
                    seq += 1
                    send(s, b"TEXT", c, b"p", seq, evs[i].encode())
                    expect_reply(s, "ACK", seq)
                    m = next_pub(sub)
                    check(m[0] == c and m[2] == b"CLASS" and m[4] == str(seq).encode(), "CLASS frames %r" % m)
                    probs[c].append(json.loads(m[6]))
        seq += 1
        send(s, b"GEN", gen_channel, b"p", seq, b'{"temperature":0,"max_tokens":24}')
        expect_reply(s, "ACK", seq)
        text, end = T.collect_gen(sub, gen_channel)
        check(text == end["text"], "pieces %r vs END %r" % (text, end["text"]))
        return got_backend, probs, end
    finally:
        d.close()


def test_serve():
    """backend cuda-emu: STATUS names it; TEXT events on three channels are ACKed; every CLASS
    equals rwkv-run on the cpu backend within 1e-4 with the same top label; a greedy GEN gives
    the same 24 tokens' text as the cpu daemon and as rwkv-run for the same input."""
    emu_available()
    events = {b"logs/a": ["GET /index 200", "disk failure on sda"],
              b"logs/b": ["user alice logged in"],
              b"logs/c": ["kernel: oom-killer invoked", "restarted nginx", "all good"]}
    t0 = time.time()
    be, probs, end = serve(EMU, events, b"logs/a")
    t_emu = time.time() - t0
    check(be == EMU, "STATUS backend %r, expected %r" % (be, EMU))
    worst = 0.0
    for c, evs in events.items():
        prefix = []
        for ev, body in zip(evs, probs[c]):
            prefix += T.b(ev) + T.b("\n")
            ref = T.ref_label_probs(prefix + T.SEV_SUFFIX, T.SEV_LABELS)
            p = np.array(body["probs"])
            check(abs(p.sum() - 1) < 1e-5, "%s probs sum %r" % (c, p.sum()))
            diff = float(np.max(np.abs(p - ref)))
            check(diff < 1e-4, "%s after %r: probs %r vs rwkv-run cpu %r" % (c, ev, p, ref))
            check(body["top"] == body["labels"][int(np.argmax(ref))], "%s top %r vs reference %r" % (c, body, ref))
            worst = max(worst, diff)
    be_cpu, probs_cpu, end_cpu = serve("cpu", events, b"logs/a")
    check(be_cpu == "cpu", "STATUS backend %r on the cpu daemon" % be_cpu)
    check(end["reason"] == end_cpu["reason"] == "max_tokens" and end["n_tokens"] == end_cpu["n_tokens"] == 24,
          "END %r vs cpu %r" % (end, end_cpu))
    # greedy: the same text means the same argmax at each of the 24 steps (a near-tie that
    # flipped would change a byte); rwkv-run ties it to the reference engine too
    check(end["text"] == end_cpu["text"], "greedy continuation on %s %r vs cpu daemon %r" %
          (EMU, end["text"], end_cpu["text"]))
    prompt = "GET /index 200\ndisk failure on sda\n"
    ref = T.rwkv_run_greedy(prompt, 24).decode("utf-8", errors="replace")
    check(end["text"] == ref, "greedy continuation %r vs rwkv-run cpu %r" % (end["text"], ref))
    print("cuda-emu daemon: %.1f s; CLASS max |p - cpu| %.2g; greedy 24 tokens equal" % (t_emu, worst))


# ---- b. snapshots move between backends -------------------------------------------------

def handover(first, second, msgs, cut):
    """A daemon on backend `first` gets msgs[:cut], SIGTERM (snapshots), restarts on `second`
    over the same state_dir: every channel comes back with its tokens_seen, STATUS names the
    new backend; msgs[cut:] follow. Returns the final snapshot states."""
    d = Daemon(backend=first, **KW)
    try:
        check(status_backend(d) == first, "STATUS backend on %s" % first)
        p = D.Producer(msgs)
        p.connect(d)
        while p.pump(min(64, cut - sum(p.acked.values()))):
            pass
        drain(d, D.CHANNELS)
        seen = {c: d.control_json(b"INFO", c)["tokens_seen"] for c in D.CHANNELS}
        check(all(seen.values()), "every channel was fed before the handover: %r" % seen)
        check(d.stop(signal.SIGTERM) == 0, "exit status on SIGTERM:\n" + d.logtext())
        set_backend(d, second)
        D.restart(d)  # already stopped: only unlinks the sockets and starts
        check(status_backend(d) == second, "STATUS backend %r after the restart, expected %s" %
              (status_backend(d), second))
        back = {c: d.control_json(b"INFO", c)["tokens_seen"] for c in D.CHANNELS}
        check(back == seen, "channels recovered on %s: %r, before: %r" % (second, back, seen))
        p.connect(d)
        while p.pump(64):
            pass
        return D.drained_states(d)
    finally:
        d.close()


def test_portable():
    """cpu -> cuda-emu and cuda-emu -> cpu: snapshots written by one backend restore on the
    other and, fed the rest of the input, end within 1e-4 of the uninterrupted cpu run (and,
    for cpu -> cuda-emu, of the uninterrupted cuda-emu run)."""
    emu_available()
    msgs = D.messages(31, 48)
    cut = 24
    ref_cpu = D.reference(msgs, backend="cpu", **KW)
    ref_emu = D.reference(msgs, backend=EMU, **KW)
    w0 = compare_close(ref_emu, ref_cpu, "uninterrupted cuda-emu vs cpu")
    got = handover("cpu", EMU, msgs, cut)
    w1 = compare_close(got, ref_cpu, "cpu -> cuda-emu vs uninterrupted cpu")
    w2 = compare_close(got, ref_emu, "cpu -> cuda-emu vs uninterrupted cuda-emu")
    got = handover(EMU, "cpu", msgs, cut)
    w3 = compare_close(got, ref_cpu, "cuda-emu -> cpu vs uninterrupted cpu")
    print("largest relative state difference: cuda-emu vs cpu %.2g; cpu->emu %.2g (vs emu %.2g); emu->cpu %.2g" %
          (w0, w1, w2, w3))


# ---- c. crash recovery on cuda-emu ------------------------------------------------------

def test_crash():
    """kill -9 three times mid-stream on cuda-emu (messages in flight, some applied over several
    jobs; once after a SNAPSHOT), producers resend after their last ACK: every restart re-applies
    input-log records, and the states end with the same bytes as an uninterrupted cuda-emu run."""
    emu_available()
    msgs = D.messages(41, 60)
    ref = D.reference(msgs, backend=EMU, **KW)
    d = Daemon(backend=EMU, **KW)
    try:
        p = D.Producer(msgs)
        p.connect(d)
        times = []
        for k in (12, 9, 14):
            if k == 9:  # the second recovery starts from snapshots, then the log after them
                p.pump(5)
                d.control_json(b"SNAPSHOT")
            p.pump(k)
            p.pump(4, wait=False)  # in flight when the kill comes
            times.append(D.restart(d, kill=True))
            check(status_backend(d) == EMU, "STATUS backend after kill -9")
            m = re.search(r"recovered \d+ channel\(s\) \((\d+) from snapshots\) and (\d+) input-log record",
                          d.logtext())
            check(m and int(m.group(2)) > 0, "no input-log records re-applied after kill -9:\n" + d.logtext())
            check(k != 9 or int(m.group(1)) > 0, "no channel recovered from a snapshot:\n" + d.logtext())
            p.connect(d)
        while p.pump(64):
            pass
        D.compare(D.drained_states(d), ref, "after 3 kill -9 cycles on cuda-emu")
        print("3 kill -9 cycles on cuda-emu, restarts %s s; states equal bit for bit" %
              ", ".join("%.2f" % t for t in times))
    finally:
        d.close()


# ---- d. no device ---------------------------------------------------------------------

def test_no_device():
    """SIMT_NO_DEVICE=1 (the emulator's probe fails): with backend cuda-emu rwkvd refuses to
    start, exits non-zero and logs the backend and the reason; with backend auto it starts on
    cpu (or on cuda where this machine has a usable GPU) and logs why."""
    listing = emu_available()
    env = {"SIMT_NO_DEVICE": "1"}
    d = Daemon(backend=EMU, env=env, start=False, **KW)
    try:
        with open(os.path.join(d.dir, "rwkvd.log"), "w") as log:
            try:
                rc = subprocess.run([T.RWKVD, "-c", d.conf], stdout=log, stderr=subprocess.STDOUT, env=d.env,
                                    timeout=20).returncode
            except subprocess.TimeoutExpired:
                raise Fail("rwkvd with backend %s and no device did not exit:\n%s" % (EMU, d.logtext()))
        text = d.logtext()
        check(rc != 0, "exit status %r with no device:\n%s" % (rc, text))
        line = next((x for x in text.splitlines() if EMU in x and "no usable GPU" in x), None)
        check(line is not None, "no log line naming %s and why it cannot run:\n%s" % (EMU, text))
        check(not os.path.exists(d.ctl_ep[6:]), "bound its sockets before refusing")
        print("refused: %s" % line.strip())
    finally:
        d.close()
    cuda_line = next((x for x in listing.splitlines() if x.split()[:1] == ["cuda"]), "")
    want = "cuda" if " available" in cuda_line else "cpu"
    d = Daemon(backend="auto", env=env, **KW)
    try:
        check(status_backend(d) == want, "auto chose %r, expected %s" % (status_backend(d), want))
        line = next((x for x in d.logtext().splitlines() if "model.backend auto:" in x), None)
        check(line is not None and want in line, "no log line saying what auto chose and why:\n" + d.logtext())
        print("auto: %s" % line.strip())
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_backends.py")
