#!/usr/bin/python3
"""Integration tests of the real rwkvd binary over real ZeroMQ sockets (ipc:// in a temp dir).

Usage: test_rwkvd.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment: RWKVD, RWKV_RUN, RWKVD_FIT_HEAD (binaries), RWKVD_TEST_MODEL (a byte-level
random checkpoint). Every receive has a timeout; a failure raises and exits 1.

What the references are: rwkv-run --tokens ... --dump-logits gives the logits of the same
tokens fed one at a time from a zero state; rwkv-run --prompt --generate with temperature 0
gives the greedy continuation. The daemon must reproduce both (it adds no numerical
difference beyond float rounding in the softmax).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import zmq
except ImportError as e:  # python3-zmq / python3-numpy missing: skip, as meson expects
    print("skip: %s" % e)
    sys.exit(77)

RWKVD = os.environ.get("RWKVD", "build/daemon/rwkvd")
RWKV_RUN = os.environ.get("RWKV_RUN", "build/kernels/rwkv-run")
FIT_HEAD = os.environ.get("RWKVD_FIT_HEAD", "build/daemon/rwkvd-fit-head")
MODEL = os.environ.get("RWKVD_TEST_MODEL", "build/tests/daemon/daemon-test-model.pth")
TIMEOUT_MS = 5000
SIG = b"RWKV1"


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def curve_setup(dirname, name="tester", perms="write=* read=* control=all"):
    """A server key pair and one client key with `perms` in dirname (ZPL certificates and an
    allow-list file, as rwkvd-keygen writes them). Returns the client's keys and the
    security section of the config."""
    spub, ssec = zmq.curve_keypair()
    cpub, csec = zmq.curve_keypair()
    path = os.path.join(dirname, "server.key_secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write('metadata\n    name = "server"\ncurve\n    public-key = "%s"\n    secret-key = "%s"\n'
                % (spub.decode(), ssec.decode()))
    allow = os.path.join(dirname, "allow")
    with open(allow, "w") as f:
        f.write("# test keys\n%s %s %s\n" % (name, cpub.decode(), perms))
    return {"server_public": spub, "public": cpub, "secret": csec, "allow": allow,
            "yaml": "security:\n  curve:\n    secret_key_file: %s\n    allow: %s\n" % (path, allow)}


def curve_client(s, keys, server_public=None):
    """Make socket s a CURVE client with keys (curve_setup's); returns s."""
    if keys:
        s.curve_serverkey = server_public or keys["server_public"]
        s.curve_publickey = keys["public"]
        s.curve_secretkey = keys["secret"]
    return s


def yaml_str(s):
    return json.dumps(s)  # JSON strings are YAML double-quoted strings


class Daemon:
    """A running rwkvd with its config, sockets and log, in a private temp dir."""

    def __init__(self, profiles="", extra="", default_profile="", env=None, max_batch=16, slots=64, start=True,
                 durability=None, backend=None):
        self.backend = backend  # model.backend; None leaves the default (cpu)
        # fsync "no" by default: acks then wait for no disk flush (an ACK under everysec may
        # wait up to a second), and kill -9 loses nothing written to the kernel anyway
        self.durability = durability if durability is not None else "durability:\n  fsync: no\n"
        self.dir = tempfile.mkdtemp(prefix="rwkvd-t")
        # RWKVD_TEST_CURVE=1: every socket with CURVE and a ZAP allow-list (security.curve)
        self.curve = curve_setup(self.dir) if os.environ.get("RWKVD_TEST_CURVE") else None
        self.ingest_ep = "ipc://%s/in.sock" % self.dir
        self.pub_ep = "ipc://%s/pub.sock" % self.dir
        self.ctl_ep = "ipc://%s/ctl.sock" % self.dir
        self.conf = os.path.join(self.dir, "rwkvd.yaml")
        self.write_config(profiles, extra, default_profile, max_batch, slots)
        self.ctx = zmq.Context()
        self.proc = None
        self.env = dict(os.environ)
        self.env.update(env or {})
        if start:
            self.start()

    def write_config(self, profiles="", extra="", default_profile="", max_batch=16, slots=64, path_override=None):
        text = """model:
  path: %s
  vocab: bytes
  threads: 1
  state_slots: %d
  max_batch: %d
%sendpoints:
  ingest: %s
  publish: %s
  control: %s
state_dir: %s/state
service:
  status_interval: 200ms
  step_timeout: 1s
%s
%s
tasks:
  default_profile: %s
  profiles:
%s
""" % (path_override or MODEL, slots, max_batch,
       "  backend: %s\n" % self.backend if self.backend else "", self.ingest_ep, self.pub_ep, self.ctl_ep, self.dir,
       self.durability, extra + ("\n" + self.curve["yaml"] if self.curve else ""),
       yaml_str(default_profile), profiles if profiles.strip() else "    {}")
        if not profiles.strip():
            text = text.replace("  profiles:\n    {}", "  profiles: {}")
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self):
        self.log = open(os.path.join(self.dir, "rwkvd.log"), "w")
        self.proc = subprocess.Popen([RWKVD, "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 10
        while time.time() < deadline:
            if os.path.exists(self.ctl_ep[6:]):
                try:
                    st = self.control(b"STATUS")
                    if st[0] == b"200":
                        break
                except Fail:
                    pass
            check(self.proc.poll() is None, "rwkvd exited at start:\n" + self.logtext())
            time.sleep(0.05)
        else:
            raise Fail("rwkvd did not answer STATUS:\n" + self.logtext())

    def logtext(self):
        try:
            with open(os.path.join(self.dir, "rwkvd.log")) as f:
                return f.read()
        except OSError:
            return ""

    def dealer(self):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        curve_client(s, self.curve)
        s.connect(self.ingest_ep)
        return s

    def sub(self, prefix=b""):
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        curve_client(s, self.curve)
        s.connect(self.pub_ep)
        s.setsockopt(zmq.SUBSCRIBE, prefix)
        time.sleep(0.2)  # slow joiner: let the subscription reach the daemon
        return s

    def control(self, *frames):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        curve_client(s, self.curve)
        s.connect(self.ctl_ep)
        s.send_multipart([SIG] + [f if isinstance(f, bytes) else f.encode() for f in frames])
        r = recv(s, what="control reply to %r" % (frames,))
        s.close()
        check(r[0] == SIG and len(r) == 3, "control reply frames %r" % r)
        return r[1:]

    def control_json(self, *frames):
        code, body = self.control(*frames)
        check(code == b"200", "control %r answered %r %r" % (frames, code, body))
        return json.loads(body)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Fail("rwkvd did not exit within %d s after signal %d" % (timeout, sig))
        return self.proc.returncode if self.proc else None

    def close(self):
        try:
            self.stop()
        finally:
            self.ctx.destroy(linger=0)
            shutil.rmtree(self.dir, ignore_errors=True)


def recv(s, timeout_ms=TIMEOUT_MS, what="message"):
    if not s.poll(timeout_ms):
        raise Fail("timed out waiting for %s" % what)
    return s.recv_multipart()


def send(s, op, channel, producer, seq, payload=None):
    frames = [SIG, op, channel, producer, str(seq).encode()]
    if payload is not None:
        frames.append(payload)
    s.send_multipart(frames)


def expect_reply(s, kind, seq=None, code=None):
    r = recv(s, what="a %s reply" % kind)
    check(r[0] == SIG and r[1] == kind.encode(), "expected %s, got %r" % (kind, r))
    if seq is not None:
        check(r[4] == str(seq).encode(), "reply for seq %r, expected %s: %r" % (r[4], seq, r))
    if code is not None:
        check(r[5] == str(code).encode(), "expected code %s, got %r" % (code, r))
    return r


def next_pub(sub, kinds=(b"CLASS", b"TEXT", b"END", b"ERROR"), timeout_ms=TIMEOUT_MS):
    while True:
        m = recv(sub, timeout_ms, "a publication")
        check(m[1] == SIG, "publication signature %r" % m)
        if m[2] in kinds:
            return m


# ---- references ------------------------------------------------------------------------

def ref_logits(tokens):
    """Logits after each token of `tokens` fed from a zero state, (T, V) float32."""
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        subprocess.run([RWKV_RUN, "--model", MODEL, "--threads", "1", "--tokens", ",".join(map(str, tokens)),
                        "--dump-logits", f.name], check=True, stdout=subprocess.DEVNULL)
        a = np.fromfile(f.name, dtype="<f4")
    return a.reshape(len(tokens), -1)


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def ref_label_probs(prefix, labels):
    """Probabilities of each label's tokens after prefix tokens, normalised over labels."""
    scores = []
    for lab in labels:
        lg = ref_logits(prefix + lab[:-1])
        s = 0.0
        for j, t in enumerate(lab):
            s += log_softmax(lg[len(prefix) - 1 + j])[t]
        scores.append(s)
    scores = np.array(scores)
    p = np.exp(scores - scores.max())
    return p / p.sum()


def b(s):
    return list(s.encode())


SEV_PROFILE = """    sev:
      kind: classify_labels
      trigger: event
      prompt_suffix: " Severity:"
      labels:
        - {name: ok, text: " ok"}
        - {name: bad, text: " bad news"}
        - {name: meh, text: " m"}
"""
SEV_LABELS = [b(" ok"), b(" bad news"), b(" m")]
SEV_SUFFIX = b(" Severity:")


# ---- tests ------------------------------------------------------------------------------

def test_ingest():
    """ACK/DUP/credit, malformed messages get the documented error and the daemon serves on."""
    d = Daemon()
    try:
        s = d.dealer()
        send(s, b"TEXT", b"app/a", b"p1", 1, b"hello")
        r = expect_reply(s, "ACK", 1)
        check(r[2:6] == [b"app/a", b"p1", b"1", b"1"] and int(r[6]) > 0, "ACK frames %r" % r)
        send(s, b"TEXT", b"app/a", b"p1", 1, b"hello")
        expect_reply(s, "DUP", 1)
        send(s, b"TEXT", b"app/a", b"p1", 5, b"gap is fine")
        expect_reply(s, "ACK", 5)
        send(s, b"TEXT", b"app/a", b"p1", 3, b"older seq")
        r = expect_reply(s, "DUP", 3)
        check(r[5] == b"5", "DUP acked %r" % r)
        send(s, b"TEXT", b"app/a", b"p2", 1, b"other producer")
        expect_reply(s, "ACK", 1)
        # a REQ-style envelope (empty delimiter) is echoed
        s.send_multipart([b"", SIG, b"SYNC", b"app/a", b"p1", b"0"])
        r = recv(s)
        check(r[0] == b"" and r[2] == b"CREDIT" and r[5] == b"5", "SYNC -> CREDIT %r" % r)
        bad = [
            ([SIG, b"BOGUS", b"app/a", b"p1", b"6"], 405),
            ([b"HELLO", b"TEXT", b"app/a", b"p1", b"6", b"x"], 400),
            ([b"RWKV9", b"TEXT", b"app/a", b"p1", b"6", b"x"], 505),
            ([SIG, b"TEXT", b"bad name", b"p1", b"6", b"x"], 422),
            ([SIG, b"TEXT", b"app/a", b"p1", b"007", b"x"], 400),
            ([SIG, b"TEXT", b"app/a", b"p1", b"0", b"x"], 422),
            ([SIG, b"TEXT", b"app/a", b"p1", b"6", b"ab\xc3\xa9\xffc"], 415),
            ([SIG, b"TEXT", b"app/a", b"p1", b"6"], 400),
            ([SIG, b"TOKENS", b"app/a", b"p1", b"6", b"\x01\x02\x03"], 400),
            ([SIG, b"TOKENS", b"app/a", b"p1", b"6", b"\x00\x01\x00\x00"], 422),  # id 256 >= V
            ([SIG, b"TASK", b"app/a", b"p1", b"6", b"nosuch"], 404),
            ([SIG, b"GEN", b"app/a", b"p1", b"6", b"[1]"], 400),
            ([SIG, b"GEN", b"app/a", b"p1", b"6", b'{"temprature":1}'], 422),
            ([SIG, b"TEXT", b"app/a", b"p1", b"6", b"x", b"extra", b"frames", b"and", b"more", b"than", b"any"], 400),
        ]
        for frames, code in bad:
            s.send_multipart(frames)
            r = recv(s, what="error reply to %r" % frames)
            # the SYNC above, sent while input was queued, may be followed by an unsolicited
            # CREDIT once the queue drains (§8.1); it can arrive between these replies
            while r[:3] == [b"", SIG, b"CREDIT"]:
                r = recv(s, what="error reply to %r" % frames)
            check(r[1] == b"ERROR" and r[5] == str(code).encode() and len(r[6]) > 0,
                  "%r -> expected ERROR %d, got %r" % (frames, code, r))
        send(s, b"TEXT", b"app/a", b"p1", 6, b"still serving")
        expect_reply(s, "ACK", 6)
        m = d.control(b"METRICS")[1].decode()
        check('rwkvd_ingest_messages_total{op="TEXT",result="415"} 1' in m, "415 counted:\n" + m)
        check('rwkvd_ingest_messages_total{op="TEXT",result="dup"} 2' in m, "dups counted:\n" + m)
        info = d.control_json(b"INFO", b"app/a")
        check({p["id"]: p["acked"] for p in info["producers"]} == {"p1": 6, "p2": 1}, "INFO producers %r" % info)
    finally:
        d.close()


def test_classify():
    """CLASS after each event: probabilities sum to 1 and equal a direct computation, and
    the fork never touches the channel state (the second event sees only event tokens)."""
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev")
    try:
        sub = d.sub(b"logs/")
        s = d.dealer()
        events = ["GET /index 200", "disk failure on sda"]
        prefix = []
        for i, ev in enumerate(events, 1):
            send(s, b"TEXT", b"logs/web", b"w1", 10 + i, ev.encode())
            expect_reply(s, "ACK", 10 + i)
            m = next_pub(sub)
            prefix += b(ev) + b("\n")
            check(m[0] == b"logs/web" and m[2] == b"CLASS" and m[3] == b"w1" and m[4] == str(10 + i).encode(),
                  "CLASS frames %r" % m)
            check(int(m[5]) == len(prefix), "tokens_seen %r, expected %d" % (m[5], len(prefix)))
            body = json.loads(m[6])
            check(body["profile"] == "sev" and body["labels"] == ["ok", "bad", "meh"], "CLASS body %r" % body)
            probs = np.array(body["probs"])
            check(abs(probs.sum() - 1) < 1e-5, "probs sum %r" % probs.sum())
            ref = ref_label_probs(prefix + SEV_SUFFIX, SEV_LABELS)
            check(np.max(np.abs(probs - ref)) < 1e-5, "probs %r vs reference %r" % (probs, ref))
            check(body["top"] == body["labels"][int(np.argmax(probs))], "top %r" % body)
    finally:
        d.close()


def test_many_channels():
    """100 channels fed concurrently by 4 producers, interleaved (batches of 8 rows, so every
    job mixes channels): each channel's CLASS results equal, bit for bit, those of the same
    events sent to a fresh channel alone (nothing else queued), and a sample of channels
    equals the rwkv-run reference."""
    n_ch, n_ev = 100, 3
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", max_batch=8, slots=240)
    try:
        sub = d.sub(b"")
        socks = [d.dealer() for _ in range(4)]
        texts = {}
        for k in range(n_ev):  # round-robin over channels, event k of every channel, then k+1
            for c in range(n_ch):
                ch = "ch%03d" % c
                ev = "event %d of channel %d %s" % (k, c, "x" * (c % 7))
                texts.setdefault(ch, []).append(ev)
                send(socks[c % 4], b"TEXT", ch.encode(), b"prod%d" % (c % 4), k + 1, ev.encode())
        for s in socks:
            for _ in range(n_ch * n_ev // 4):
                expect_reply(s, "ACK")

        def collect(n, got):
            while sum(len(v) for v in got.values()) < n:
                m = next_pub(sub, timeout_ms=20000)
                check(m[2] == b"CLASS", "unexpected publication %r" % m)
                got.setdefault(m[0].decode(), []).append((int(m[4]), int(m[5]), json.loads(m[6])["probs"]))
            return got

        got = collect(n_ch * n_ev, {})
        st = d.control_json(b"STATUS")
        check(st["channels"]["total"] == n_ch, "STATUS channels %r" % st["channels"])
        # each channel alone: the same events on a fresh channel, with nothing else queued
        s = socks[0]
        alone = {}
        for i, (ch, evs) in enumerate(texts.items()):
            for k, ev in enumerate(evs):
                send(s, b"TEXT", ("alone/" + ch).encode(), b"solo", k + 1, ev.encode())
                expect_reply(s, "ACK", k + 1)
            collect((i + 1) * n_ev, alone)
        for ch, evs in texts.items():
            seqs = [q for q, _, _ in got[ch]]
            check(seqs == list(range(1, n_ev + 1)), "%s: CLASS seqs in order %r" % (ch, seqs))
            check(got[ch] == alone["alone/" + ch],
                  "%s: interleaved results %r differ from the channel alone %r" % (ch, got[ch], alone["alone/" + ch]))
        for c in (0, 37, 99):  # and against the independent reference
            ch = "ch%03d" % c
            prefix = []
            for k, ev in enumerate(texts[ch]):
                prefix += b(ev) + b("\n")
                check(got[ch][k][1] == len(prefix), "%s tokens_seen %r" % (ch, got[ch][k]))
                ref = ref_label_probs(prefix + SEV_SUFFIX, SEV_LABELS)
                diff = np.max(np.abs(np.array(got[ch][k][2]) - ref))
                check(diff < 1e-5, "%s event %d: probs differ from rwkv-run by %g" % (ch, k, diff))
    finally:
        d.close()


def test_fairness():
    """A channel flooded with 30000 tokens does not starve a small one: the small channel's
    CLASS arrives while the flood still has most of its input queued."""
    d = Daemon(profiles=SEV_PROFILE, max_batch=4)
    try:
        sub = d.sub(b"small")
        s = d.dealer()
        ids = np.arange(30000, dtype="<u4") % 200 + 32
        send(s, b"TOKENS", b"flood", b"p", 1, ids.tobytes())
        expect_reply(s, "ACK", 1)
        send(s, b"TASK", b"small", b"p", 1, b"sev")
        expect_reply(s, "ACK", 1)
        send(s, b"TEXT", b"small", b"p", 2, b"hello")
        expect_reply(s, "ACK", 2)
        m = next_pub(sub, timeout_ms=10000)
        check(m[0] == b"small" and m[2] == b"CLASS", "small channel's CLASS %r" % m)
        info = d.control_json(b"INFO", b"flood")
        check(info["queued_tokens"] > 15000, "flood drained before the small channel was served: %r" % info)
        ref = ref_label_probs(b("hello\n") + SEV_SUFFIX, SEV_LABELS)
        check(np.max(np.abs(np.array(json.loads(m[6])["probs"]) - ref)) < 1e-5, "small channel's probs")
    finally:
        d.close()


def test_event_one_job():
    """Not saturated, an event's tokens go through in one job (a sequence run) together with
    its output, and the result still equals rwkv-run's; saturated (more channels than
    max_batch), channels advance one token per job and give the same results."""
    d = Daemon(profiles=SEV_PROFILE, default_profile="sev", max_batch=16)
    try:
        sub = d.sub(b"")
        s = d.dealer()
        send(s, b"TEXT", b"warm", b"p", 1, b"x")  # channel creation and first job out of the way
        next_pub(sub)

        def steps():
            return metric(d.control(b"METRICS")[1].decode(), "rwkvd_steps_total")

        ev = "disk failure on sda"  # 20 tokens with the separator: more than max_batch
        before = steps()
        send(s, b"TEXT", b"warm", b"p", 2, ev[:9].encode())
        m = next_pub(sub)
        check(steps() - before == 1, "a 10-token event took %d jobs, expected 1" % (steps() - before))
        ref = ref_label_probs(b("x\n") + b(ev[:9]) + b("\n") + SEV_SUFFIX, SEV_LABELS)
        check(np.max(np.abs(np.array(json.loads(m[6])["probs"]) - ref)) < 1e-5, "probs after a sequence run")
        before = steps()
        send(s, b"TEXT", b"warm", b"p", 3, ev.encode())
        m = next_pub(sub)
        check(steps() - before == 2, "a 20-token event with max_batch 16 took %d jobs, expected 2" % (steps() - before))
        ref = ref_label_probs(b("x\n") + b(ev[:9]) + b("\n") + b(ev) + b("\n") + SEV_SUFFIX, SEV_LABELS)
        check(np.max(np.abs(np.array(json.loads(m[6])["probs"]) - ref)) < 1e-5, "probs after two sequence runs")
        # saturated: 20 channels, max_batch 16
        for c in range(20):
            send(s, b"TEXT", b"sat%02d" % c, b"p", 1, ev.encode())
        got = {}
        while len(got) < 20:
            m = next_pub(sub, timeout_ms=20000)
            got[m[0]] = np.array(json.loads(m[6])["probs"])
        ref = ref_label_probs(b(ev) + b("\n") + SEV_SUFFIX, SEV_LABELS)
        for ch, p in got.items():
            check(np.max(np.abs(p - ref)) < 1e-5, "%r saturated: probs differ from rwkv-run" % ch)
    finally:
        d.close()


def rwkv_run_greedy(prompt, n):
    out = subprocess.run([RWKV_RUN, "--model", MODEL, "--threads", "1", "--prompt", prompt, "--generate", str(n),
                          "--temperature", "0"], check=True, stdout=subprocess.PIPE).stdout
    check(out.endswith(b"\n"), "rwkv-run output ends with a newline")
    return out[:-1]


def collect_gen(sub, channel):
    pieces, end = [], None
    while end is None:
        m = next_pub(sub)
        check(m[0] == channel, "publication for %r" % m[0])
        if m[2] == b"TEXT":
            check(int(m[6]) == len(pieces), "piece index %r" % m[6])
            pieces.append(m[7])
        elif m[2] == b"END":
            end = json.loads(m[6])
        else:
            raise Fail("unexpected %r" % m)
    return b"".join(pieces).decode("utf-8"), end


def test_continue():
    """GEN streams TEXT pieces and one END equal to rwkv-run's greedy continuation; without
    commit the channel state is unchanged; stop strings cut the text; commit feeds it."""
    d = Daemon(profiles="""    chat:
      kind: continue
      trigger: request
      prompt_suffix: ""
      generate: {max_tokens: 24, temperature: 0}
""", default_profile="chat")
    try:
        sub = d.sub(b"c/")
        s = d.dealer()
        send(s, b"TEXT", b"c/1", b"p", 1, b"Once upon a time")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"c/1", b"p", 2, b"")
        expect_reply(s, "ACK", 2)
        text, end = collect_gen(sub, b"c/1")
        ref = rwkv_run_greedy("Once upon a time\n", 24).decode("utf-8", errors="replace")
        check(end["reason"] == "max_tokens" and end["n_tokens"] == 24 and not end["committed"], "END %r" % end)
        check(text == end["text"] == ref, "continuation %r / END %r vs rwkv-run %r" % (text, end["text"], ref))
        # unchanged state: the same request gives the same text
        send(s, b"GEN", b"c/1", b"p", 3, b"")
        expect_reply(s, "ACK", 3)
        text2, end2 = collect_gen(sub, b"c/1")
        check(text2 == text, "second continuation differs: the state was touched")
        # a stop string taken from the middle of the known text
        stop = next(ref[i:i + 2] for i in range(2, len(ref) - 2) if "\ufffd" not in ref[i:i + 2])
        cut = ref[: ref.find(stop)]
        send(s, b"GEN", b"c/1", b"p", 4, json.dumps({"stop": [stop], "max_tokens": 24}).encode())
        expect_reply(s, "ACK", 4)
        text3, end3 = collect_gen(sub, b"c/1")
        check(end3["reason"] == "stop" and end3["stop"] == stop and text3 == end3["text"] == cut,
              "stop: %r %r, expected %r" % (text3, end3, cut))
        # commit feeds the sampled tokens to the channel
        before = d.control_json(b"INFO", b"c/1")["tokens_seen"]
        send(s, b"GEN", b"c/1", b"p", 5, b'{"commit":true,"max_tokens":5}')
        expect_reply(s, "ACK", 5)
        text4, end4 = collect_gen(sub, b"c/1")
        check(end4["committed"] and end4["n_tokens"] == 5, "commit END %r" % end4)
        for _ in range(50):
            after = d.control_json(b"INFO", b"c/1")["tokens_seen"]
            if after == before + 5:
                break
            time.sleep(0.05)
        check(after == before + 5, "tokens_seen %d -> %d after a committed 5-token generation" % (before, after))
        send(s, b"GEN", b"c/1", b"p", 6, b"")
        expect_reply(s, "ACK", 6)
        text5, _ = collect_gen(sub, b"c/1")
        check(text5 != text, "after commit the continuation must change")
        # CANCEL ends a long generation with reason cancelled
        send(s, b"GEN", b"c/1", b"p", 7, b'{"max_tokens":60000}')
        expect_reply(s, "ACK", 7)
        send(s, b"CANCEL", b"c/1", b"p", 8)
        expect_reply(s, "ACK", 8)
        while True:
            m = next_pub(sub)
            if m[2] == b"END":
                check(json.loads(m[6])["reason"] == "cancelled", "cancel END %r" % m)
                break
    finally:
        d.close()


def test_control():
    """STATUS, CHANNELS (prefix, after), INFO, RESET, DROP, SNAPSHOT, EVICT (tier disk, idempotent, 404), errors."""
    d = Daemon(profiles=SEV_PROFILE)
    try:
        s = d.dealer()
        for i, ch in enumerate([b"a/x", b"a/y", b"b/z"], 1):
            send(s, b"TEXT", ch, b"p", i, b"some input")
            expect_reply(s, "ACK", i)
        st = d.control_json(b"STATUS")
        for k in ("daemon", "version", "protocol", "pid", "state", "uptime_s", "backend", "model", "channels",
                  "slots", "queued", "generations", "tokens_total", "tokens_per_s"):
            check(k in st, "STATUS lacks %s: %r" % (k, st))
        check(st["daemon"] == "rwkvd" and st["protocol"] == [1] and st["state"] == "running", "STATUS %r" % st)
        check(st["model"]["n_vocab"] == 256 and st["channels"]["total"] == 3, "STATUS %r" % st)
        chans = d.control_json(b"CHANNELS")
        check([c["name"] for c in chans["channels"]] == ["a/x", "a/y", "b/z"] and not chans["more"], "%r" % chans)
        chans = d.control_json(b"CHANNELS", b"a/", b"a/x")
        check([c["name"] for c in chans["channels"]] == ["a/y"], "CHANNELS a/ after a/x: %r" % chans)
        for _ in range(100):
            info = d.control_json(b"INFO", b"a/x")
            if info["tokens_seen"] == 11:
                break
            time.sleep(0.02)
        check(info["tokens_seen"] == 11 and info["tier"] == "resident" and info["queued_messages"] == 0, "%r" % info)
        lp = d.control_json(b"STATUS")["loop"]
        check(lp["cpu_s"] > 0 and lp["input_tokens_total"] >= 10 and lp["iterations"] > 0 and
              abs(lp["ns_per_input_token"] - lp["cpu_s"] * 1e9 / lp["input_tokens_total"]) <=
              1e-6 * lp["ns_per_input_token"], "STATUS loop %r" % lp)
        check(0 < lp["iteration_max_since_last_status_s"] <= lp["iteration_max_s"], "STATUS loop %r" % lp)
        lp2 = d.control_json(b"STATUS")["loop"]
        check(lp2["iteration_max_since_last_status_s"] <= lp2["iteration_max_s"] and
              lp2["iteration_max_s"] >= lp["iteration_max_s"] and lp2["cpu_s"] >= lp["cpu_s"], "STATUS loop %r" % lp2)
        r = d.control_json(b"RESET", b"a/x")
        check(r == {"name": "a/x", "tokens_seen": 0}, "RESET %r" % r)
        check(d.control_json(b"INFO", b"a/x")["tokens_seen"] == 0, "tokens_seen after RESET")
        r = d.control_json(b"DROP", b"a/y")
        check(r["name"] == "a/y" and "dropped_messages" in r, "DROP %r" % r)
        check(d.control(b"INFO", b"a/y")[0] == b"404", "INFO of a dropped channel")
        snap = d.control_json(b"SNAPSHOT")
        check(snap["channels"] >= 1 and snap["bytes"] > 0 and "duration_s" in snap, "SNAPSHOT %r" % snap)
        check(d.control(b"SNAPSHOT", b"no/such")[0] == b"404", "SNAPSHOT of an unknown channel is 404")
        r = d.control_json(b"EVICT", b"a/x")
        check(r == {"name": "a/x", "tier": "disk"}, "EVICT %r" % r)
        check(d.control_json(b"INFO", b"a/x")["tier"] == "disk", "INFO tier after EVICT")
        check(d.control_json(b"EVICT", b"a/x") == r, "EVICT of an evicted channel is 200 again")
        check(d.control(b"EVICT", b"no/such")[0] == b"404", "EVICT of an unknown channel is 404")
        check(d.control_json(b"STATUS")["channels"]["disk"] == 1, "STATUS counts the disk tier")
        check('rwkvd_channels{tier="disk"} 1' in d.control(b"METRICS")[1].decode(), "METRICS disk tier")
        check(d.control(b"FROB")[0] == b"405", "unknown command")
        check(d.control(b"INFO")[0] == b"400", "INFO without a channel")
        m = d.control(b"METRICS")[1].decode()
        for name in ("rwkvd_ingest_messages_total", "rwkvd_publish_messages_total", "rwkvd_publish_dropped_total",
                     "rwkvd_tokens_total", "rwkvd_channels{tier=\"resident\"}", "rwkvd_queued_tokens",
                     "rwkvd_input_tokens_total", "rwkvd_loop_cpu_seconds_total", "rwkvd_loop_iterations_total",
                     "rwkvd_loop_iteration_max_seconds"):
            check(name in m, "METRICS lacks %s" % name)
        # the dropped channel's pair is remembered: a resend is a duplicate
        send(s, b"TEXT", b"a/y", b"p", 2, b"resend")
        expect_reply(s, "DUP", 2)
    finally:
        d.close()


def test_limits():
    """507 beyond max_channels, 413 for oversized messages, 429 on a full queue with the pair
    paused (425 for later seqs) until the resend is accepted, and an unsolicited CREDIT."""
    d = Daemon(extra="""limits:
  max_channels: 3
  max_queue_tokens: 100
  max_message_bytes: 1KiB""", env={"RWKVD_TEST_STEP_DELAY_MS": "30"})
    try:
        s = d.dealer()
        for i, ch in enumerate([b"c1", b"c2", b"c3"], 1):
            send(s, b"TEXT", ch, b"p", 1, b"x")
            expect_reply(s, "ACK", 1)
        send(s, b"TEXT", b"c4", b"p", 1, b"x")
        r = expect_reply(s, "ERROR", code=507)
        check(b"max_channels" in r[6], "507 names the limit: %r" % r)
        send(s, b"TEXT", b"c1", b"p", 2, b"y" * 2000)
        expect_reply(s, "ERROR", code=413)
        send(s, b"TOKENS", b"c1", b"p", 2, np.full(150, 65, dtype="<u4").tobytes())
        r = expect_reply(s, "ERROR", code=413)
        check(b"max_queue_tokens" in r[6], "413 names the limit: %r" % r)
        send(s, b"TOKENS", b"c1", b"p", 3, np.full(60, 65, dtype="<u4").tobytes())
        expect_reply(s, "ACK", 3)
        send(s, b"TOKENS", b"c1", b"p", 4, np.full(60, 66, dtype="<u4").tobytes())
        r = expect_reply(s, "ERROR", code=429)
        check(b"max_queue_tokens" in r[6], "429 names the limit: %r" % r)
        send(s, b"TOKENS", b"c1", b"p", 5, np.full(1, 67, dtype="<u4").tobytes())
        expect_reply(s, "ERROR", code=425)
        r = recv(s, 10000, "an unsolicited CREDIT")
        check(r[1] == b"CREDIT" and r[2] == b"c1" and r[4] == b"3" and int(r[5]) >= 1, "CREDIT %r" % r)
        for _ in range(200):  # the CREDIT comes at half depth; 60 tokens fit once it is empty
            if d.control_json(b"INFO", b"c1")["queued_tokens"] == 0:
                break
            time.sleep(0.02)
        send(s, b"TOKENS", b"c1", b"p", 4, np.full(60, 66, dtype="<u4").tobytes())
        expect_reply(s, "ACK", 4)
        send(s, b"TOKENS", b"c1", b"p", 5, np.full(1, 67, dtype="<u4").tobytes())
        expect_reply(s, "ACK", 5)
        check(d.proc.poll() is None, "rwkvd alive")
    finally:
        d.close()


def test_reload():
    """SIGHUP and control RELOAD: a valid file applies (a new profile), an invalid one or a
    change of a restart-only key keeps the running config."""
    d = Daemon()
    try:
        s = d.dealer()
        send(s, b"TASK", b"r", b"p", 1, b"sev")
        expect_reply(s, "ERROR", code=404)
        d.write_config(profiles=SEV_PROFILE)
        d.proc.send_signal(signal.SIGHUP)
        ok = False
        for seq in range(2, 60):
            send(s, b"TASK", b"r", b"p", seq, b"sev")
            r = recv(s)
            if r[1] == b"ACK":
                ok = True
                break
            time.sleep(0.05)
        check(ok, "profile added by SIGHUP is not usable")
        with open(d.conf, "a") as f:
            f.write("bogus_key: 1\n")
        code, body = d.control(b"RELOAD")
        check(code == b"422" and b"rwkvd.yaml:" in body and b"bogus_key" in body, "invalid RELOAD %r %r" % (code, body))
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)
        check(d.proc.poll() is None, "rwkvd survives an invalid SIGHUP reload")
        d.write_config(profiles=SEV_PROFILE, path_override="/nonexistent.pth")
        code, body = d.control(b"RELOAD")
        check(code == b"422" and b"model.path" in body, "restart-only change %r %r" % (code, body))
        d.write_config(profiles=SEV_PROFILE, extra="log:\n  level: debug")
        r = d.control_json(b"RELOAD")
        check("log.level" in r["changed"], "RELOAD changed %r" % r)
        send(s, b"TEXT", b"r", b"p", 100, b"still working")
        expect_reply(s, "ACK", 100)
        m = d.control(b"METRICS")[1].decode()
        check('rwkvd_reloads_total{result="ok"} 2' in m, "reload metrics:\n" + m)
    finally:
        d.close()


def test_sigterm():
    """SIGTERM during a long generation: END cancelled is published and rwkvd exits 0 fast."""
    d = Daemon(default_profile="")
    try:
        sub = d.sub(b"")
        s = d.dealer()
        send(s, b"TEXT", b"t", b"p", 1, b"abc")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"t", b"p", 2, b'{"max_tokens":65536}')
        expect_reply(s, "ACK", 2)
        next_pub(sub, kinds=(b"TEXT",))
        t0 = time.time()
        rc = d.stop(signal.SIGTERM, timeout=5)
        check(rc == 0, "exit status %r:\n%s" % (rc, d.logtext()))
        check(time.time() - t0 < 5, "exit took too long")
        while True:
            m = next_pub(sub, kinds=(b"END",), timeout_ms=2000)
            check(json.loads(m[6])["reason"] == "cancelled", "END on shutdown %r" % m)
            break
    finally:
        d.close()


def test_check_config():
    """--check-config: 0 on a good file, 1 with file:line:col on a bad one; --version, --help."""
    d = Daemon(profiles=SEV_PROFILE, start=False)
    try:
        r = subprocess.run([RWKVD, "--check-config", "-c", d.conf], capture_output=True, text=True)
        check(r.returncode == 0, "good config: %r" % (r,))
        r = subprocess.run([RWKVD, "--check-config", "-v", "-c", d.conf], capture_output=True, text=True)
        check(r.returncode == 0 and "max_batch" in r.stdout, "-v dumps the config: %r" % (r,))
        with open(d.conf, "a") as f:
            f.write("limits:\n  max_channels: -3\n")
        r = subprocess.run([RWKVD, "--check-config", "-c", d.conf], capture_output=True, text=True)
        check(r.returncode == 1 and (d.conf + ":") in r.stderr, "bad config: %r" % (r,))
        check(r.stderr.split(":")[1].isdigit() and r.stderr.split(":")[2].isdigit(), "file:line:col %r" % r.stderr)
        r = subprocess.run([RWKVD, "--version"], capture_output=True, text=True)
        check(r.returncode == 0 and r.stdout.startswith("rwkvd "), "--version %r" % (r,))
        r = subprocess.run([RWKVD, "--help"], capture_output=True, text=True)
        check(r.returncode == 0 and "--check-config" in r.stdout, "--help %r" % (r,))
        r = subprocess.run([RWKVD, "-c", "/nonexistent/rwkvd.yaml"], capture_output=True, text=True)
        check(r.returncode == 1 and "/nonexistent/rwkvd.yaml" in r.stderr, "missing file %r" % (r,))
    finally:
        d.close()


def test_notify():
    """NOTIFY_SOCKET harness: READY, STATUS, WATCHDOG, RELOADING + READY on SIGHUP, STOPPING
    on SIGTERM, in order; a hung step (test hook) stops the watchdog pings."""
    tmp = tempfile.mkdtemp(prefix="rwkvd-n")
    path = os.path.join(tmp, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(5)
    d = Daemon(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "RWKVD_TEST_STEP_DELAY_MS": "4000"},
               start=False)
    msgs = []

    def read_until(pred, timeout=5):
        end = time.time() + timeout
        while time.time() < end:
            try:
                data = ns.recv(4096).decode()
            except socket.timeout:
                break
            msgs.append(data)
            if pred(data):
                return data
        raise Fail("notify message not seen; got %r" % msgs[-10:])

    try:
        d.start()
        read_until(lambda m: "READY=1" in m)
        read_until(lambda m: m.startswith("STATUS=") and "channels" in m)
        read_until(lambda m: m == "WATCHDOG=1")
        # a step that takes 4 s (> step_timeout 1 s): pings stop while it runs. The ACK may come
        # before the step starts (everysec ACKs once the record is written), so the 0.8 s window
        # below runs from 1.9 to 2.7 s after the ACK: inside the step when it started up to
        # 0.9 s after the ACK (pings stop 1 s into it), with 1.3 s of slack before its end
        s = d.dealer()
        send(s, b"TEXT", b"w", b"p", 1, b"ab")
        expect_reply(s, "ACK", 1)
        t_ack = time.time()
        time.sleep(0.3)
        t0 = time.time()  # the loop answers ingest and control while the step runs
        send(s, b"TEXT", b"w", b"p", 2, b"cd")
        expect_reply(s, "ACK", 2)
        check(d.control_json(b"STATUS")["queued"]["tokens"] > 0, "queued input while the step runs")
        check(time.time() - t0 < 0.5, "replies waited for the step: %.2f s" % (time.time() - t0))
        time.sleep(max(0.0, t_ack + 1.9 - time.time()))
        ns.settimeout(0.01)
        try:
            while True:
                ns.recv(4096)  # drop what was queued before the step counted as hung
        except socket.timeout:
            pass
        ns.settimeout(5)
        del msgs[:]
        end = max(time.time(), t_ack + 1.9) + 0.8
        while time.time() < end:
            ns.settimeout(max(0.01, end - time.time()))  # nothing read after the window
            try:
                msgs.append(ns.recv(4096).decode())
            except socket.timeout:
                break
        ns.settimeout(5)
        check("WATCHDOG=1" not in msgs, "watchdog pinged during a hung step: %r" % msgs)
        read_until(lambda m: m == "WATCHDOG=1", timeout=5)  # resumes after the step
        d.proc.send_signal(signal.SIGHUP)
        read_until(lambda m: "RELOADING=1" in m and "MONOTONIC_USEC=" in m)
        read_until(lambda m: "READY=1" in m)
        d.proc.send_signal(signal.SIGTERM)
        read_until(lambda m: "STOPPING=1" in m)
        ns.settimeout(0.1)
        end = time.time() + 10
        while d.proc.poll() is None and time.time() < end:  # keep reading: a full socket blocks sd_notify
            try:
                ns.recv(4096)
            except socket.timeout:
                pass
        check(d.proc.poll() == 0, "exit status after STOPPING: %r" % d.proc.poll())
    finally:
        ns.close()
        d.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_linear_head():
    """rwkvd-fit-head fits a head from JSON lines; a classify_linear profile publishes CLASS
    with its labels, probabilities summing to 1, separating the training classes."""
    tmp = tempfile.mkdtemp(prefix="rwkvd-h")
    try:
        data = os.path.join(tmp, "train.jsonl")
        with open(data, "w") as f:
            for i in range(20):
                f.write(json.dumps({"text": "ERROR disk %d failed badly" % i, "label": "error"}) + "\n")
                f.write(json.dumps({"text": "ok request %d served" % i, "label": "fine"}) + "\n")
        head = os.path.join(tmp, "h.head")
        r = subprocess.run([FIT_HEAD, "--model", MODEL, "--data", data, "--out", head, "--threads", "1",
                            "--epochs", "300"], capture_output=True, text=True)
        check(r.returncode == 0, "fit: %r" % (r,))
        with open(head) as f:
            check(f.readline().strip() == "rwkvd-linear-head 1", "head magic")
        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"text": "x"}\n')
        r = subprocess.run([FIT_HEAD, "--model", MODEL, "--data", bad, "--out", head + ".2"], capture_output=True,
                           text=True)
        check(r.returncode == 1 and "bad.jsonl:1" in r.stderr, "bad data: %r" % (r,))
        d = Daemon(profiles="""    intent:
      kind: classify_linear
      head: %s
""" % head, default_profile="intent")
        try:
            sub = d.sub(b"")
            s = d.dealer()
            for seq, (ch, text, want) in enumerate([(b"h1", "ERROR disk 3 failed badly", "error"),
                                                    (b"h2", "ok request 7 served", "fine")], 1):
                send(s, b"TEXT", ch, b"p", seq, text.encode())
                expect_reply(s, "ACK", seq)
                m = next_pub(sub)
                body = json.loads(m[6])
                check(m[2] == b"CLASS" and body["labels"] == ["error", "fine"], "linear CLASS %r" % m)
                check(abs(sum(body["probs"]) - 1) < 1e-5 and body["top"] == want, "linear result %r" % body)
        finally:
            d.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise Fail("metric %s missing" % name)


def test_slow_subscriber():
    """A subscriber that never reads: publications it cannot take are dropped and counted
    (rwkvd_publish_dropped_total), the daemon never blocks, and the generation completes."""
    d = Daemon()
    try:
        slow = d.ctx.socket(zmq.SUB)
        slow.setsockopt(zmq.RCVHWM, 1)
        slow.setsockopt(zmq.RCVBUF, 4096)
        slow.connect(d.pub_ep)
        slow.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.3)
        s = d.dealer()
        send(s, b"TEXT", b"flood", b"p", 1, b"abc")
        expect_reply(s, "ACK", 1)
        send(s, b"GEN", b"flood", b"p", 2, b'{"max_tokens":20000}')
        expect_reply(s, "ACK", 2)
        t0 = time.time()
        while time.time() - t0 < 60:
            if not d.control_json(b"INFO", b"flood")["generating"]:
                break
            time.sleep(0.1)
        else:
            raise Fail("generation did not finish with a stalled subscriber")
        m = d.control(b"METRICS")[1].decode()
        dropped = metric(m, "rwkvd_publish_dropped_total")
        sent = metric(m, 'rwkvd_publish_messages_total{kind="TEXT"}')
        check(dropped > 0, "no drops counted toward a subscriber that never reads:\n" + m)
        check(dropped + sent >= 1000, "every publication is either sent or counted: %d + %d" % (sent, dropped))
    finally:
        d.close()


def test_world_vocab():
    """With ../shared/testdata: a V=65536 checkpoint with the World vocabulary (UTF-8 text,
    multi-token labels) gives normalised CLASS probabilities, and a greedy continuation equals
    rwkv-run's (both end at id 0 and ban ids without bytes)."""
    vocab = os.path.join(os.environ.get("RWKV_TESTDATA", ""), "rwkv_vocab_v20230424.txt")
    model = os.environ.get("RWKVD_TEST_WORLD_MODEL", "")
    if not os.path.exists(vocab) or not os.path.exists(model):
        print("skip: no World vocabulary or V=65536 test model")
        sys.exit(77)
    global MODEL
    MODEL = model
    d = Daemon(profiles="""    sev:
      kind: classify_labels
      prompt_suffix: " Severity:"
      labels:
        - {name: ok, text: " ok"}
        - {name: error, text: " serious error"}
""", default_profile="sev", start=False)
    try:
        with open(d.conf) as f:
            text = f.read().replace("vocab: bytes", "vocab: " + json.dumps(vocab))
        with open(d.conf, "w") as f:
            f.write(text)
        d.start()
        sub = d.sub(b"")
        s = d.dealer()
        send(s, b"TEXT", b"w", b"p", 1, "Disk on fire \u00e9t\u00e9".encode())
        expect_reply(s, "ACK", 1)
        m = next_pub(sub)
        probs = np.array(json.loads(m[6])["probs"])
        check(abs(probs.sum() - 1) < 1e-5, "probs sum %r" % probs)
        send(s, b"GEN", b"w", b"p", 2, b'{"temperature":0,"max_tokens":16}')
        expect_reply(s, "ACK", 2)
        while True:
            m = next_pub(sub)
            if m[2] == b"END":
                end = json.loads(m[6])
                break
        out = subprocess.run([RWKV_RUN, "--model", model, "--vocab", vocab, "--threads", "1", "--prompt",
                              "Disk on fire \u00e9t\u00e9\n", "--generate", "16", "--temperature", "0"],
                             check=True, stdout=subprocess.PIPE).stdout[:-1].decode("utf-8", errors="replace")
        check(end["text"] == out, "World continuation %r vs rwkv-run %r" % (end["text"], out))
    finally:
        d.close()


def run_named(scope, prog):
    """Run the test named by argv[1] (test_NAME in scope, a module's globals()): exit 0 and
    print "ok NAME", exit 1 on Fail, exit 2 with the list of names when unknown."""
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    fn = scope.get("test_" + name)
    if not fn:
        print("usage: %s NAME; names: %s" % (prog, " ".join(k[5:] for k in scope if k.startswith("test_"))))
        sys.exit(2)
    try:
        fn()
    except Fail as e:
        print("FAIL %s: %s" % (name, e))
        sys.exit(1)
    print("ok %s" % name)


if __name__ == "__main__":
    run_named(globals(), "test_rwkvd.py")
