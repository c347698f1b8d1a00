#!/usr/bin/python3
"""Security of the real rwkvd binary over real sockets (PROTOCOL.md §15): CURVE on every
socket, the ZAP allow-list, per-key permissions, SIGHUP, public binds.

Usage: test_security.py NAME   (NAME = one of the test_* functions below, without the prefix)
Environment as test_rwkvd.py, plus RWKVD_KEYGEN (rwkvd-keygen). Every receive has a timeout.

  refusals      on INGEST, INGEST-PULL, PUBLISH and CONTROL: no key, a wrong server key and
                a key not on the list are refused (no reply, no channel, no publication) and
                counted per reason in METRICS; only the listed key gets through
  permissions   a key that may write app/ gets 403 (naming the key and the channel) on ops/x;
                one that may read app/ receives nothing of ops/ and its "" subscription is
                refused and counted; a read-only control key gets 403 on DROP
  revoke        SIGHUP after removing a key from the allow-list: its next message on the same
                connection is 403, its subscriptions are cut; another key's connections carry on
  public_bind   a non-loopback tcp bind without CURVE is refused by --check-config and at start
                with a message naming the endpoint and the option; insecure_bind opts in
  clients       rwkvctl and rwkvcat with RWKV_SERVER_KEY/RWKV_CLIENT_KEY get through; without
                keys, with a key not on the list or with a wrong server key they say which,
                instead of a bare time-out
  python_client the Python module (clients/python) with use_keys: control and producer get
                through; a key not on the list raises Timeout saying the daemon refused it
  standby       a standby authenticates to its primary with its own key (client_key_file,
                peer_public_key_file) and follows it; a listed key without the replicate right
                is refused on the replication stream, counted per key
  keygen        rwkvd-keygen's certificates (secret mode 0600) as the server key and as an
                allow-list directory with permissions in their metadata; a secret key that
                others can read is refused at start
"""
import os
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_rwkvd as T  # noqa: E402  (skips with 77 when zmq/numpy are missing)
from test_rwkvd import SIG, Daemon, Fail, check, curve_client, expect_reply, metric, recv, send  # noqa: E402

zmq = T.zmq
import zmq.auth  # noqa: E402  (load_certificate: the keygen files as czmq-compatible tools read them)
KEYGEN = os.environ.get("RWKVD_KEYGEN", "build/clients/rwkvd-keygen")
RWKVCTL = os.environ.get("RWKVCTL", "build/clients/rwkvctl")
RWKVCAT = os.environ.get("RWKVCAT", "build/clients/rwkvcat")
RWKVSUB = os.environ.get("RWKVSUB", "build/clients/rwkvsub")
QUIET_MS = 700  # how long a refused client waits to see that nothing comes


def keypair():
    pub, sec = zmq.curve_keypair()
    return {"public": pub, "secret": sec}


class SecureDaemon(Daemon):
    """A Daemon whose allow-list holds an admin key (its own helpers use it) and `keys`
    (name -> (keypair, permissions)); the allow-list file can be rewritten and reloaded."""

    def __init__(self, keys, pull=False, **kw):
        self.keys = keys
        os.environ.pop("RWKVD_TEST_CURVE", None)
        super().__init__(start=False, **kw)
        self.curve = T.curve_setup(self.dir, name="admin")
        self.allow_path = self.curve["allow"]
        self.admin_line = open(self.allow_path).read()
        self.write_allow(keys)
        self.write_config()
        self.pull_ep = "ipc://%s/pull.sock" % self.dir
        if pull:  # INGEST-PULL beside the other endpoints
            with open(self.conf) as f:
                text = f.read()
            with open(self.conf, "w") as f:
                f.write(text.replace("  control: %s\n" % self.ctl_ep,
                                     "  control: %s\n  ingest_pull: %s\n" % (self.ctl_ep, self.pull_ep)))
        self.start()

    def write_allow(self, keys):
        with open(self.allow_path, "w") as f:
            f.write(self.admin_line)
            for name, (kp, perms) in keys.items():
                f.write("%s %s %s\n" % (name, kp["public"].decode(), perms))

    def sock(self, kind, ep, kp, server_public=None):
        """A socket of `kind` connected to ep with kp's keys (None: no CURVE)."""
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if kp is not None:
            curve_client(s, {"server_public": self.curve["server_public"], **kp}, server_public)
        s.connect(ep)
        return s

    def metrics(self):
        return self.control(b"METRICS")[1].decode()


def metric_or_zero(text, name):
    try:
        return metric(text, name)
    except (Fail, ValueError, TypeError):
        return 0


def wait_metric(d, name, at_least, timeout=10):
    deadline = time.time() + timeout
    while True:
        met = d.control(b"METRICS")[1].decode()
        v = metric_or_zero(met, name)
        if v >= at_least:
            return v
        check(time.time() < deadline, "%s stayed %s (< %s):\n%s" % (name, v, at_least, met))
        time.sleep(0.05)


def channels(d):
    return sorted(c["name"] for c in d.control_json(b"CHANNELS")["channels"])


def nothing_comes(s, what, ms=QUIET_MS):
    check(not s.poll(ms), "%s got a message: %r" % (what, s.recv_multipart() if s.poll(0) else None))


def credentials(listed):
    """(label, keypair or None, server public key or None) for the four cases."""
    return [("nokey", None, None), ("wrongserver", keypair(), zmq.curve_keypair()[0]),
            ("unlisted", keypair(), None), ("listed", listed, None)]


# ---- tests ------------------------------------------------------------------------------

def test_refusals():
    alice = keypair()
    d = SecureDaemon({"alice": (alice, "write=* read=* control=read")}, pull=True)
    pull_ep = d.pull_ep
    keep = []
    try:
        st = d.control_json(b"STATUS")["security"]
        check(st["curve"] is True and st["keys"] == 2, "STATUS security %r" % st)
        check("secret" not in repr(st).lower(), "STATUS security shows a secret: %r" % st)
        # PUBLISH: four subscribers of everything
        subs = {}
        for label, kp, spub in credentials(alice):
            s = d.sock(zmq.SUB, d.pub_ep, kp, spub)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            subs[label] = s
        wait_metric(d, "rwkvd_subscriptions", 1)
        # INGEST: each producer writes its own channel
        for label, kp, spub in credentials(alice):
            s = d.sock(zmq.DEALER, d.ingest_ep, kp, spub)
            send(s, b"TEXT", b"in/" + label.encode(), b"p", 1, b"hello")
            if label == "listed":
                expect_reply(s, "ACK", 1)
            else:
                nothing_comes(s, "an INGEST producer with " + label)
            keep.append(s)  # open until the end: a slow handshake is still counted
        # INGEST-PULL: the same, without replies
        for label, kp, spub in credentials(alice):
            s = d.sock(zmq.PUSH, pull_ep, kp, spub)
            send(s, b"TEXT", b"pull/" + label.encode(), b"p", 1, b"hello")
            keep.append(s)
        deadline = time.time() + 10
        while "pull/listed" not in channels(d):
            check(time.time() < deadline, "the listed PUSH producer's channel never appeared: %r" % channels(d))
            time.sleep(0.05)
        check(channels(d) == ["in/listed", "pull/listed"], "channels %r" % channels(d))
        # CONTROL: STATUS from each
        for label, kp, spub in credentials(alice):
            s = d.sock(zmq.REQ, d.ctl_ep, kp, spub)
            s.send_multipart([SIG, b"STATUS"])
            if label == "listed":
                r = recv(s, what="STATUS reply")
                check(r[1] == b"200", "listed key's STATUS %r" % r[:2])
            else:
                nothing_comes(s, "a CONTROL client with " + label)
            keep.append(s)
        # a publication: DROP publishes ERROR 409 on the channel's topic
        code, body = d.control(b"DROP", b"in/listed")
        check(code == b"200", "DROP %r %r" % (code, body))
        m = recv(subs["listed"], what="the listed subscriber's ERROR publication")
        check(m[0] == b"in/listed" and m[2] == b"ERROR", "publication %r" % m)
        for label in ("nokey", "wrongserver", "unlisted"):
            nothing_comes(subs[label], "a subscriber with " + label, ms=200)
        # every refusal is counted, per socket and reason
        met = d.metrics()
        for sock in ("ingest", "ingest_pull", "publish", "control"):
            for reason in ("crypto", "not_allowed"):
                name = 'rwkvd_security_connections_total{socket="%s",result="%s"}' % (sock, reason)
                wait_metric(d, name, 1)
            # no key: a mechanism mismatch (libzmq reports it as "other" when the client hung up first)
            deadline = time.time() + 10
            while True:
                met = d.metrics()
                n = sum(metric_or_zero(met, 'rwkvd_security_connections_total{socket="%s",result="%s"}' % (sock, r))
                        for r in ("mechanism", "other"))
                if n >= 1:
                    break
                check(time.time() < deadline, "the key-less client's refusal on %s not counted:\n%s" % (sock, met))
                time.sleep(0.05)
            check(metric(met, 'rwkvd_security_connections_total{socket="%s",result="accepted"}' % sock) >= 1,
                  "accepted handshakes on %s not counted:\n%s" % (sock, met))
        check(metric(met, 'rwkvd_security_zap_requests_total{result="unknown_key"}') >= 4,
              "ZAP refusals not counted:\n" + met)
        check(d.proc.poll() is None, "rwkvd alive")
    finally:
        d.close()


def test_permissions():
    alice, viewer = keypair(), keypair()
    d = SecureDaemon({"alice": (alice, "write=app/ read=app/ control=read"),
                      "viewer": (viewer, "read=* control=read")})
    try:
        a = d.sock(zmq.DEALER, d.ingest_ep, alice)
        send(a, b"TEXT", b"ops/x", b"p", 1, b"not yours")
        r = expect_reply(a, "ERROR", 1, 403)
        check(b"alice" in r[6] and b"ops/x" in r[6] and b"app/" in r[6], "403 text %r" % r[6])
        send(a, b"TEXT", b"app/x", b"p", 1, b"yours")
        expect_reply(a, "ACK", 1)
        send(a, b"SYNC", b"ops/y", b"p", 0)
        expect_reply(a, "ERROR", code=403)
        v = d.sock(zmq.DEALER, d.ingest_ep, viewer)
        send(v, b"TEXT", b"app/v", b"p", 1, b"read only")
        r = expect_reply(v, "ERROR", 1, 403)
        check(b"viewer" in r[6] and b"(none)" in r[6], "403 text %r" % r[6])
        check(channels(d) == ["app/x"], "channels %r" % channels(d))
        # admin writes ops/ and app/ channels, then drops them: one ERROR publication each
        adm = d.dealer()
        for i, ch in enumerate((b"ops/y", b"app/y"), 1):
            send(adm, b"TEXT", ch, b"adm", i, b"x")
            expect_reply(adm, "ACK", i)
        # alice subscribes to everything (refused), ops/ (refused) and app/ (applied)
        s_all = d.sock(zmq.SUB, d.pub_ep, alice)
        s_all.setsockopt(zmq.SUBSCRIBE, b"")
        s_ops = d.sock(zmq.SUB, d.pub_ep, alice)
        s_ops.setsockopt(zmq.SUBSCRIBE, b"ops/")
        s_app = d.sock(zmq.SUB, d.pub_ep, alice)
        s_app.setsockopt(zmq.SUBSCRIBE, b"app/")
        s_v = d.sock(zmq.SUB, d.pub_ep, viewer)
        s_v.setsockopt(zmq.SUBSCRIBE, b"ops/")
        wait_metric(d, "rwkvd_security_subscriptions_refused_total", 2)
        wait_metric(d, "rwkvd_subscriptions", 2)
        for ch in (b"ops/y", b"app/y"):
            code, body = d.control(b"DROP", ch)
            check(code == b"200", "DROP %r: %r %r" % (ch, code, body))
        m = recv(s_app, what="alice's app/ publication")
        check(m[0] == b"app/y" and m[2] == b"ERROR", "publication %r" % m)
        m = recv(s_v, what="viewer's ops/ publication")
        check(m[0] == b"ops/y", "publication %r" % m)
        nothing_comes(s_all, "alice's refused subscription to everything")
        nothing_comes(s_ops, "alice's refused subscription to ops/", ms=200)
        nothing_comes(s_app, "alice's app/ subscriber (an ops/ publication?)", ms=200)
        # control: read-only commands pass, DROP is 403 naming the key and the command
        c = d.sock(zmq.REQ, d.ctl_ep, alice)
        c.send_multipart([SIG, b"DROP", b"app/x"])
        r = recv(c, what="DROP reply")
        check(r[1] == b"403" and b"alice" in r[2] and b"DROP" in r[2], "DROP by a read-only key: %r" % r)
        c.send_multipart([SIG, b"CHANNELS"])
        r = recv(c, what="CHANNELS reply")
        check(r[1] == b"200", "CHANNELS by a read-only key: %r" % r[:2])
        check(channels(d) == ["app/x"], "DROP by a read-only key changed the channels: %r" % channels(d))
        met = d.metrics()
        check(metric(met, 'rwkvd_security_forbidden_total{key="alice",socket="ingest"}') == 2, met)
        check(metric(met, 'rwkvd_security_forbidden_total{key="alice",socket="control"}') == 1, met)
        check(metric(met, 'rwkvd_security_forbidden_total{key="alice",socket="publish"}') == 2, met)
        check(metric(met, 'rwkvd_security_forbidden_total{key="viewer",socket="ingest"}') == 1, met)
        check("subscription" in d.logtext() and "refused" in d.logtext(), "refused subscription not logged")
        # a subscriber that goes away takes its subscription with it (the gauge follows)
        check(metric(met, "rwkvd_subscriptions") == 2, met)
        s_app.close()
        wait_metric_below = time.time() + 10
        while metric_or_zero(d.metrics(), "rwkvd_subscriptions") != 1:
            check(time.time() < wait_metric_below, "rwkvd_subscriptions after a subscriber left:\n" + d.metrics())
            time.sleep(0.05)
    finally:
        d.close()


def test_revoke():
    alice, bob = keypair(), keypair()
    keys = {"alice": (alice, "write=* read=* control=read"), "bob": (bob, "write=* read=* control=read")}
    d = SecureDaemon(keys)
    try:
        a = d.sock(zmq.DEALER, d.ingest_ep, alice)
        b = d.sock(zmq.DEALER, d.ingest_ep, bob)
        sa = d.sock(zmq.SUB, d.pub_ep, alice)
        sa.setsockopt(zmq.SUBSCRIBE, b"x/")
        sb = d.sock(zmq.SUB, d.pub_ep, bob)
        sb.setsockopt(zmq.SUBSCRIBE, b"x/")
        cb = d.sock(zmq.REQ, d.ctl_ep, bob)
        wait_metric(d, "rwkvd_subscriptions", 2)
        for s, ch in ((a, b"x/a"), (b, b"x/b")):
            send(s, b"TEXT", ch, b"p", 1, b"before")
            expect_reply(s, "ACK", 1)
        del keys["bob"]
        d.write_allow(keys)
        d.proc.send_signal(signal.SIGHUP)
        wait_metric(d, 'rwkvd_reloads_total{result="ok"}', 1)
        # bob's established INGEST and CONTROL connections: refused on the next message
        send(b, b"TEXT", b"x/b", b"p", 2, b"after")
        r = expect_reply(b, "ERROR", 2, 403)
        check(b"bob" in r[6] and b"allow-list" in r[6], "403 text %r" % r[6])
        cb.send_multipart([SIG, b"STATUS"])
        r = recv(cb, what="bob's STATUS reply")
        check(r[1] == b"403", "bob's STATUS after removal: %r" % r[:3])
        # alice's connection is the same one and still served
        send(a, b"TEXT", b"x/a", b"p", 2, b"after")
        expect_reply(a, "ACK", 2)
        # PUBLISH was reopened: alice's SUB resubscribes by itself, bob's is refused at its handshake
        wait_metric(d, "rwkvd_security_publish_reopened_total", 1)
        # libzmq resends a SUB's subscriptions from the application's thread, on its next call
        # into the socket (a reading subscriber makes one at once)
        deadline = time.time() + 10
        while metric_or_zero(d.metrics(), "rwkvd_subscriptions") < 1:
            check(time.time() < deadline, "alice's subscription did not come back after PUBLISH reopened")
            sa.poll(50)
            sb.poll(0)
        code, body = d.control(b"DROP", b"x/a")
        check(code == b"200", "DROP %r %r" % (code, body))
        m = recv(sa, timeout_ms=5000, what="alice's publication after the reload")
        check(m[0] == b"x/a" and m[2] == b"ERROR", "publication %r" % m)
        nothing_comes(sb, "bob's subscriber after his key was removed")
        met = d.metrics()
        check(metric(met, 'rwkvd_security_forbidden_total{key="bob",socket="ingest"}') == 1, met)
        check(metric(met, "rwkvd_security_keys") == 2, met)
        check(d.control_json(b"STATUS")["security"]["keys"] == 2, "STATUS keys after the reload")
        # a broken allow-list is refused and the running one kept
        with open(d.allow_path, "a") as f:
            f.write("carol not-a-key\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_metric(d, 'rwkvd_reloads_total{result="failed"}', 1)
        send(a, b"TEXT", b"x/a", b"p", 3, b"still")
        expect_reply(a, "ACK", 3)
        check("security.curve.allow" in d.logtext() and "allow:4: key 'carol'" in d.logtext(),
              "allow-list error not logged:\n" + d.logtext())
    finally:
        d.close()


def test_public_bind():
    d = Daemon(start=False)
    try:
        for ep in ("tcp://0.0.0.0:7741", "tcp://192.0.2.1:7741"):
            d.write_config()
            text = open(d.conf).read().replace("  publish: %s\n" % d.pub_ep, "  publish: %s\n" % ep)
            with open(d.conf, "w") as f:
                f.write(text)
            r = subprocess.run([T.RWKVD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
            check(r.returncode == 1 and ep in r.stderr and "security.insecure_bind" in r.stderr
                  and "security.curve" in r.stderr, "--check-config: %d %r" % (r.returncode, r.stderr))
            p = subprocess.run([T.RWKVD, "-c", d.conf], capture_output=True, text=True, timeout=20)
            check(p.returncode != 0 and ep in p.stderr + p.stdout and "security.insecure_bind" in p.stderr + p.stdout,
                  "start: %d %r" % (p.returncode, p.stderr))
        # opting in passes the check (the daemon would warn at every start)
        with open(d.conf, "a") as f:
            f.write("security:\n  insecure_bind: true\n")
        r = subprocess.run([T.RWKVD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
        check(r.returncode == 0, "--check-config with insecure_bind: %r" % r.stderr)
        # a loopback bind needs nothing, and the warning is about public binds only
        d.write_config()
        d.start()
        check("WITHOUT CURVE" not in d.logtext(), "warning on a loopback daemon")
    finally:
        d.close()


def test_clients():
    alice = keypair()
    d = SecureDaemon({"alice": (alice, "write=app/ read=app/ control=read")})
    try:
        def cert(name, kp, secret):
            path = os.path.join(d.dir, name)
            with open(path, "w") as f:
                f.write('metadata\n    name = "%s"\ncurve\n    public-key = "%s"\n' % (name, kp["public"].decode()))
                if secret:
                    f.write('    secret-key = "%s"\n' % kp["secret"].decode())
            return path
        server = cert("server.key", {"public": d.curve["server_public"]}, False)
        mine = cert("alice.key_secret", alice, True)
        stranger = cert("mallory.key_secret", keypair(), True)
        wrong = cert("wrong.key", keypair(), False)

        def run(prog, args, server_key, client_key, stdin=None):
            env = dict(os.environ)
            env.pop("RWKV_SERVER_KEY", None)
            env.pop("RWKV_CLIENT_KEY", None)
            if server_key:
                env["RWKV_SERVER_KEY"] = server_key
            if client_key:
                env["RWKV_CLIENT_KEY"] = client_key
            return subprocess.run([prog] + args, env=env, input=stdin, capture_output=True, text=True, timeout=30)

        ctl = ["-e", d.ctl_ep, "-t", "1500ms", "status"]
        r = run(RWKVCTL, ctl, server, mine)
        check(r.returncode == 0 and "security.curve: true" in " ".join(r.stdout.split()).replace(": ", ": "),
              "rwkvctl with keys: %r" % (r,))
        # the key may be given as the 40 Z85 characters too
        r = run(RWKVCTL, ctl, d.curve["server_public"].decode(), mine)
        check(r.returncode == 0, "rwkvctl with a literal server key: %r" % (r,))
        for sk, ck, want in ((None, None, "requires CURVE"), (server, stranger, "not on the daemon's allow-list"),
                             (wrong, mine, "wrong server key")):
            r = run(RWKVCTL, ctl, sk, ck)
            check(r.returncode == 3 and want in r.stderr, "rwkvctl (%s, %s): %d %r" % (sk, ck, r.returncode, r.stderr))
        r = run(RWKVCTL, ["-e", d.ctl_ep, "drop", "app/x"], server, mine)
        check(r.returncode != 0 and "403" in r.stderr + r.stdout and "alice" in r.stderr + r.stdout,
              "rwkvctl drop by a read-only key: %r" % (r,))
        r = run(RWKVCTL, ctl, server, None)
        check(r.returncode == 2 and "RWKV_CLIENT_KEY" in r.stderr, "half the keys: %r" % (r,))
        cat = ["-e", d.ingest_ep, "-c", "app/cat", "--connect-timeout", "1500ms"]
        r = run(RWKVCAT, cat, server, mine, stdin="one line\n")
        check(r.returncode == 0, "rwkvcat with keys: %r" % (r,))
        check(channels(d) == ["app/cat"], "channels %r" % channels(d))
        r = run(RWKVCAT, cat, server, stranger, stdin="one line\n")
        check(r.returncode != 0 and "not on the daemon's allow-list" in r.stderr, "rwkvcat unlisted: %r" % (r,))
        r = run(RWKVCAT, ["-e", d.ingest_ep, "-c", "ops/cat"], server, mine, stdin="one line\n")
        check(r.returncode != 0 and "403" in r.stderr, "rwkvcat to ops/ with a key for app/: %r" % (r,))
        # rwkvsub says why nothing comes, instead of waiting silently
        sub = ["-e", d.pub_ep, "-C", d.ctl_ep, "-n", "1", "-t", "1500ms", "-c", "app/"]
        for sk, ck, want in ((None, None, "requires CURVE"), (server, stranger, "not on the daemon's allow-list")):
            r = run(RWKVSUB, sub, sk, ck)
            check(r.returncode == 3 and want in r.stderr, "rwkvsub (%s, %s): %d %r" % (sk, ck, r.returncode, r.stderr))
    finally:
        d.close()


def test_python_client():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
    import rwkvd_client as C
    alice = keypair()
    d = SecureDaemon({"alice": (alice, "write=app/ read=app/ control=read")})
    try:
        server = os.path.join(d.dir, "server.key")
        with open(server, "w") as f:
            f.write('curve\n    public-key = "%s"\n' % d.curve["server_public"].decode())
        mine = os.path.join(d.dir, "alice.key_secret")
        with open(mine, "w") as f:  # a bare secret key, as curve_keygen prints it
            f.write(alice["secret"].decode() + "\n")
        C.use_keys(server, mine)
        ctl = C.Control(d.ctl_ep, timeout=2.0)
        status, body = ctl.command("STATUS")
        check(status == 200 and body["security"]["curve"], "STATUS %r" % status)
        status, body = ctl.command("DROP", "app/x")
        check(status == 403 and "alice" in body, "DROP by a read-only key: %r %r" % (status, body))
        with C.Producer(d.ingest_ep, producer="py", timeout=1.0) as prod:
            prod.send_text("app/py", "hello")
            prod.flush(timeout=10)
        check(channels(d) == ["app/py"], "channels %r" % channels(d))
        C.use_keys(server, keypair()["secret"].decode())  # a key the daemon does not list
        ctl2 = C.Control(d.ctl_ep, timeout=1.5)
        try:
            ctl2.command("STATUS")
            raise Fail("a key not on the list got a STATUS reply")
        except C.Timeout as e:
            check("refused this client's key" in str(e), "Timeout text %r" % str(e))
        ctl.close()
        ctl2.close()
    finally:
        C.use_keys(None, None)
        d.close()


def test_standby():
    import test_failover as FO
    sby_kp, nosync_kp = keypair(), keypair()
    pri = Daemon(start=False, **FO.KW)
    sby = Daemon(start=False, **FO.KW)
    bad = Daemon(start=False, **FO.KW)
    try:
        pri.curve = T.curve_setup(pri.dir, name="admin")
        with open(pri.curve["allow"], "a") as f:
            f.write("standby %s replicate\nnosync %s control=read\n" % (sby_kp["public"].decode(),
                                                                       nosync_kp["public"].decode()))
        spub = os.path.join(pri.dir, "server.key")
        with open(spub, "w") as f:
            f.write('curve\n    public-key = "%s"\n' % pri.curve["server_public"].decode())
        for d, kp in ((sby, sby_kp), (bad, nosync_kp)):
            d.curve = T.curve_setup(d.dir, name="admin")
            mine = os.path.join(d.dir, "client.key_secret")
            fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write('curve\n    public-key = "%s"\n    secret-key = "%s"\n' % (kp["public"].decode(),
                                                                               kp["secret"].decode()))
            d.curve["yaml"] += "    client_key_file: %s\n    peer_public_key_file: %s\n" % (mine, spub)
        for d in (pri, sby, bad):
            FO.configure(d, "", profiles=False)
        check(FO.launch(pri), "primary exited at start:\n" + FO.logtext(pri))
        s = pri.dealer()
        for i in range(1, 4):
            send(s, b"TEXT", b"r/1", b"p", i, b"replicated")
            expect_reply(s, "ACK", i)
        check(FO.launch(sby, "--standby-of", pri.ctl_ep), "standby exited at start:\n" + FO.logtext(sby))
        FO.wait_for("the standby to follow", lambda: FO.repl(pri)["standbys"] == 1, 20)
        check(FO.repl(sby)["role"] == "standby", "standby STATUS %r" % FO.repl(sby))
        send(s, b"TEXT", b"r/1", b"p", 4, b"live")
        expect_reply(s, "ACK", 4)
        FO.wait_for("the live record on the standby", lambda: FO.repl(sby)["next_lsn"] == FO.repl(pri)["next_lsn"], 20)
        # a listed key without replicate: its STATUS passes (control=read), its SYNC is refused
        bad.log = open(os.path.join(bad.dir, "rwkvd.log"), "a")
        bad.proc = subprocess.Popen([T.RWKVD, "-c", bad.conf, "--standby-of", pri.ctl_ep], stdout=bad.log,
                                    stderr=subprocess.STDOUT)
        wait_metric(pri, 'rwkvd_security_forbidden_total{key="nosync",socket="replication"}', 1, timeout=20)
        check(FO.repl(pri)["standbys"] == 1, "the key without replicate became a standby: %r" % FO.repl(pri))
        check("no replicate right" in pri.logtext(), "refusal not logged:\n" + pri.logtext())
        bad.proc.kill()
        bad.proc.wait()
    finally:
        for d in (bad, sby, pri):
            d.close()


def test_keygen():
    d = Daemon(start=False)
    try:
        kdir = os.path.join(d.dir, "keys")
        allow = os.path.join(d.dir, "clients")
        os.mkdir(kdir)
        os.mkdir(allow)

        def keygen(*args):
            r = subprocess.run([KEYGEN] + list(args), capture_output=True, text=True)
            check(r.returncode == 0, "rwkvd-keygen %r: %s" % (args, r.stderr))
            return r.stdout

        keygen(os.path.join(kdir, "server"))
        line = keygen("--write", "app/", "--read", "app/", "--control", "all", os.path.join(kdir, "alice"))
        check(line.startswith("alice ") and "write=app/" in line, "allow-list line %r" % line)
        keygen("-n", "ro", "--control", "read", os.path.join(kdir, "viewer"))
        for name in ("server", "alice", "viewer"):
            mode = stat.S_IMODE(os.stat(os.path.join(kdir, name + ".key_secret")).st_mode)
            check(mode == 0o600, "%s.key_secret mode %o" % (name, mode))
        r = subprocess.run([KEYGEN, os.path.join(kdir, "alice")], capture_output=True, text=True)
        check(r.returncode != 0 and "-f" in r.stderr, "keygen overwrote a key: %r" % r.stderr)
        for name in ("alice", "viewer"):
            os.link(os.path.join(kdir, name + ".key"), os.path.join(allow, name + ".key"))
        spub, _ = zmq.auth.load_certificate(os.path.join(kdir, "server.key"))
        keys = {n: dict(zip(("public", "secret"), zmq.auth.load_certificate(os.path.join(kdir, n + ".key_secret"))))
                for n in ("alice", "viewer")}
        d.curve = {"server_public": spub, "allow": allow, **keys["alice"],
                   "yaml": "security:\n  curve:\n    secret_key_file: %s/server.key_secret\n    allow: %s\n"
                   % (kdir, allow)}
        d.write_config()
        # a secret key others can read is refused, with the file and the fix named
        os.chmod(os.path.join(kdir, "server.key_secret"), 0o644)
        r = subprocess.run([T.RWKVD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
        check(r.returncode == 1 and "server.key_secret" in r.stderr and "chmod 600" in r.stderr, r.stderr)
        os.chmod(os.path.join(kdir, "server.key_secret"), 0o600)
        r = subprocess.run([T.RWKVD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
        check(r.returncode == 0, "--check-config: %r" % r.stderr)
        d.start()
        check(d.control_json(b"STATUS")["security"]["keys"] == 2, "keys from the directory")
        s = d.dealer()  # alice: write=app/
        send(s, b"TEXT", b"app/1", b"p", 1, b"x")
        expect_reply(s, "ACK", 1)
        send(s, b"TEXT", b"ops/1", b"p", 1, b"x")
        expect_reply(s, "ERROR", 1, 403)
        v = d.ctx.socket(zmq.REQ)
        v.setsockopt(zmq.LINGER, 0)
        curve_client(v, {"server_public": spub, **keys["viewer"]})
        v.connect(d.ctl_ep)
        v.send_multipart([SIG, b"RESET", b"app/1"])
        r = recv(v, what="RESET by the read-only key")
        check(r[1] == b"403" and b"'ro'" in r[2], "RESET by ro: %r" % r)
    finally:
        d.close()


if __name__ == "__main__":
    T.run_named(globals(), "test_security.py")
