"""rwkvd_client — a small pure-Python client for rwkvd (protocol RWKV1, proto/PROTOCOL.md).

Needs pyzmq (Debian: python3-zmq) and nothing else. Three classes, one per socket role:

* ``Producer``  — a DEALER on the INGEST endpoint. ``send_text``, ``send_tokens``, ``gen``,
  ``reset``, ``task``, ``cancel``, ``close_channel`` queue a message with the next seq and
  return it; ``flush()`` waits until every message is acknowledged. Follows the protocol's
  producer algorithm: the credit, in tokens, bounds the summed costs of the messages in flight
  per channel (§8.1; a TEXT costs its octets plus ``separator_tokens``), unanswered messages are resent
  with their original seqs after a timeout (the daemon answers DUP for those it already
  has), 429 waits for CREDIT, 409/423/500/503/507 back off, 425 while paused is expected (§8.2).
  Non-retryable errors raise ``RejectedError`` from ``flush()``/``poll()``.
* ``Subscriber`` — a SUB on the PUBLISH endpoint; iterate it (or call ``recv``) to get
  ``Publication`` tuples with the CLASS/END body already parsed. It recovers missed output by
  itself (§9.7): a gap in a channel's ``oseq`` or a reconnect makes it ask control ``REPLAY``
  for what it missed and deliver that, in order, before live output, dropping duplicates;
  ``recover=False`` turns this off.
* ``Control``   — a REQ on the CONTROL endpoint; ``command("STATUS")`` returns
  ``(status, body)`` with the body parsed as JSON (text for METRICS and errors).

Every receive has a timeout; nothing blocks forever unless you pass ``timeout=None``.

CURVE (PROTOCOL.md section 15): with ``$RWKV_SERVER_KEY`` (the daemon's public key) and
``$RWKV_CLIENT_KEY`` (this client's secret certificate) set, or after ``use_keys(server_key,
client_key)``, every socket is a CURVE client; each value is a certificate file as
rwkvd-keygen writes it, a file with a bare Z85 key, or the 40 Z85 characters. A Producer or
Control whose daemon refused its key says so in the Timeout it raises.

Example::

    with Producer("tcp://127.0.0.1:5555", producer="web-1") as p:
        p.send_text("app/nginx", "GET / 200")
        p.flush(timeout=10)
"""

import json
import os
import socket
import struct
import time
from collections import OrderedDict, namedtuple

import zmq

SIGNATURE = b"RWKV1"

OPS = ("TEXT", "TOKENS", "RESET", "TASK", "GEN", "CANCEL", "CLOSE", "SYNC")
RETRY_BACKOFF = (409, 423, 500, 503, 507)
NO_CREDIT, PAUSED = 429, 425

Publication = namedtuple("Publication", "channel kind producer seq tokens_seen index piece code text body oseq",
                         defaults=(None,))
Publication.__doc__ = """One publish message (§9). kind is CLASS, TEXT, END or ERROR;
index/piece are set for TEXT, code/text for ERROR, body (a dict) for CLASS and END; oseq is
the channel's output sequence number (§9.7), None from a daemon that sends none."""


class ProtocolError(Exception):
    """A message from the daemon that does not follow the protocol."""


class RejectedError(Exception):
    """The daemon rejected messages with non-retryable errors: errors is a list of
    (seq, code, text)."""

    def __init__(self, errors):
        self.errors = errors
        super().__init__("; ".join("seq %d: %d %s" % e for e in errors))


class CommandError(Exception):
    """A control command refused: status (the code, e.g. 404, 422) and reason (its text)."""

    def __init__(self, status, reason):
        self.status, self.reason = status, reason
        super().__init__("%d %s" % (status, reason))


class TimeoutError_(Exception):
    """No (complete) answer within the timeout."""


Timeout = TimeoutError_


_KEYS = {}


def _z85_key(var, spec, what):
    """The Z85 key `what` (public-key, secret-key) from a certificate or bare-key file, or spec
    itself when it is 40 Z85 characters and no such file exists."""
    if len(spec) == 40 and not os.path.exists(spec):
        return spec.encode("ascii")
    try:
        with open(spec) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError("%s: %s: %s" % (var, spec, e.strerror))
    for line in lines:
        s = line.strip()
        if line == s and len(s) == 40 and not s.startswith("#"):
            return s.encode("ascii")
        if s.startswith(what) and "=" in s:
            v = s.split("=", 1)[1].strip().strip("\"'")
            if len(v) == 40:
                return v.encode("ascii")
    raise ValueError("%s: %s: no %s in it (a certificate from rwkvd-keygen or a bare Z85 key)" % (var, spec, what))


def use_keys(server_key=None, client_key=None):
    """CURVE for the sockets made from now on: server_key the daemon's public key, client_key
    this client's secret certificate (see the module's docstring); None, None turns it off."""
    _KEYS.clear()
    if server_key is None and client_key is None:
        _KEYS["off"] = True
        return
    if not server_key or not client_key:
        raise ValueError("CURVE needs both the server's public key and this client's secret key")
    secret = _z85_key("client_key", client_key, "secret-key")
    _KEYS.update(server=_z85_key("server_key", server_key, "public-key"), secret=secret,
                 public=zmq.curve_public(secret))


def _secure(sock):
    """Apply the CURVE keys (use_keys, else $RWKV_SERVER_KEY/$RWKV_CLIENT_KEY) to sock; returns
    a monitor socket of its handshakes, or None without keys."""
    if not _KEYS:
        server, client = os.environ.get("RWKV_SERVER_KEY"), os.environ.get("RWKV_CLIENT_KEY")
        if server or client:
            use_keys(server, client)
    if not _KEYS or "off" in _KEYS:
        return None
    sock.curve_serverkey = _KEYS["server"]
    sock.curve_publickey = _KEYS["public"]
    sock.curve_secretkey = _KEYS["secret"]
    return sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED |
                                   zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                   zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def _why(mon):
    """Why a CURVE socket got no reply, from its monitor's events ("" when nothing says)."""
    if mon is None:
        return ""
    seen = {}
    while mon.poll(0):
        frames = mon.recv_multipart()
        event, value = struct.unpack("=HI", frames[0][:6])
        seen[event] = value
    if zmq.EVENT_HANDSHAKE_FAILED_AUTH in seen:
        return ": the daemon refused this client's key (ZAP status %d): not on its allow-list" % \
            seen[zmq.EVENT_HANDSHAKE_FAILED_AUTH]
    if seen.get(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL) == 0x11000002:
        return ": the daemon does not use CURVE"
    if zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in seen or zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL in seen:
        return ": the CURVE handshake failed (a wrong server key?)"
    if zmq.EVENT_CONNECTED in seen and zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen:
        return ": connected, but the CURVE handshake never completed (a wrong server key?)"
    return ""


def default_endpoint(role):
    """$RWKVD_<ROLE>, else ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/<role>.sock, like rwkvd.yaml."""
    env = os.environ.get("RWKVD_" + role.upper())
    if env:
        return env
    return "ipc://%s/%s.sock" % (os.environ.get("RUNTIME_DIRECTORY") or "/run/rwkvd", role)


def _uint(frame, what):
    s = frame.decode("ascii", "replace")
    if not s.isdigit() or (len(s) > 1 and s[0] == "0") or int(s) >= 1 << 64:
        raise ProtocolError("%s is not a uint: %r" % (what, frame))
    return int(s)


def pack_tokens(ids):
    """Token ids -> a TOKENS payload (little-endian uint32)."""
    ids = list(ids)
    if not ids:
        raise ValueError("TOKENS needs at least one id")
    return struct.pack("<%dI" % len(ids), *ids)


class _Entry:
    __slots__ = ("channel", "op", "seq", "payload", "sent", "cost")

    def __init__(self, channel, op, seq, payload, cost):
        self.channel, self.op, self.seq, self.payload, self.sent, self.cost = channel, op, seq, payload, False, cost


class Producer:
    """At-least-once producer for one producer id (any number of channels).

    Seqs come from one counter shared by all channels (gaps per channel are allowed, §6.2);
    it starts above what the daemon acknowledged (SYNC) for the first channel used, or at
    ``first_seq``. ``window`` bounds the unacknowledged messages: a send blocks (pumping
    replies) while it is full; keep it at most the daemon's reply high-water mark (§8.3,
    STATUS ``limits.ingest_reply_hwm``, 10000 by default) so that no reply is lost.
    ``separator_tokens`` is what the daemon's event separator adds to each TEXT (§8.1,
    STATUS ``limits.separator_tokens``): 1 for rwkvd's default ``"\\n"``; 64 is always safe.
    """

    def __init__(self, endpoint=None, producer=None, first_seq=None, timeout=2.0, window=1024, context=None,
                 separator_tokens=1):
        self.endpoint = endpoint or default_endpoint("ingest")
        self.producer = producer or "%s:%d" % (socket.gethostname().split(".")[0] or "host", os.getpid())
        self.timeout = timeout
        self.window = window
        self.separator_tokens = separator_tokens
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._mon = _secure(self._sock)
        self._sock.connect(self.endpoint)
        self._next_seq = first_seq
        self._pending = OrderedDict()  # seq -> _Entry, in seq order
        self._chan = {}  # channel -> dict(credit, in_flight, outstanding, acked, paused_until, ...)
        self._errors = []
        self._last_progress = time.monotonic()
        self._backoff = 0.0

    # -- public -------------------------------------------------------------------------
    def send_text(self, channel, text):
        """Queue one TEXT event; returns its seq."""
        return self._queue(channel, "TEXT", text.encode("utf-8") if isinstance(text, str) else bytes(text))

    def send_tokens(self, channel, ids):
        """Queue a TOKENS message (ids 0..2^32-1); returns its seq."""
        return self._queue(channel, "TOKENS", pack_tokens(ids))

    def gen(self, channel, **params):
        """Request a continuation (§6.4): gen("chat", max_tokens=32, stop=["\\n"]); returns its seq."""
        return self._queue(channel, "GEN", json.dumps(params, separators=(",", ":")).encode() if params else b"")

    def task(self, channel, profile):
        return self._queue(channel, "TASK", profile.encode("ascii"))

    def reset(self, channel):
        return self._queue(channel, "RESET", None)

    def cancel(self, channel):
        return self._queue(channel, "CANCEL", None)

    def close_channel(self, channel):
        return self._queue(channel, "CLOSE", None)

    def sync(self, channel, timeout=5.0):
        """SYNC (§6.1): returns (acked, credit) for (channel, this producer) and ends a pause."""
        deadline = time.monotonic() + timeout
        st = self._state(channel)
        st["synced"] = None
        self._send(channel, "SYNC", 0, None)
        last = time.monotonic()
        while st["synced"] is None:
            now = time.monotonic()
            if now >= deadline:
                raise Timeout("no CREDIT for SYNC from %s within %.1fs%s" % (self.endpoint, timeout, _why(self._mon)))
            if now - last >= self.timeout:  # lost: ask again
                self._send(channel, "SYNC", 0, None)
                last = now
            self._pump(min(deadline, last + self.timeout) - now)
        return st["synced"]

    @property
    def unacked(self):
        """Messages not yet acknowledged."""
        return len(self._pending)

    def poll(self, timeout=0.0):
        """Process replies for up to timeout seconds, (re)send what credit allows; raises
        RejectedError for messages the daemon refused for good since the last call."""
        self._pump(timeout)
        self._raise_errors()

    def flush(self, timeout=30.0):
        """Wait until every queued message is acknowledged (ACK or DUP)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Timeout("%d messages unacknowledged by %s%s" % (len(self._pending), self.endpoint,
                                                                      _why(self._mon)))
            self._pump(0.1 if left is None else min(0.1, left))
        self._raise_errors()

    def close(self):
        if self._mon is not None:
            self._mon.close(0)
        self._sock.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals ----------------------------------------------------------------------
    def _state(self, channel):
        st = self._chan.get(channel)
        if st is None:
            # credit None: unknown until a SYNC answers (§8.1 step 1); outstanding: the summed
            # costs of the messages in flight; queue: the largest credit seen, the queue's size
            # once it was seen empty (a cost above it counts as it)
            st = self._chan[channel] = {"credit": None, "in_flight": 0, "outstanding": 0, "queue": 0, "acked": 0,
                                        "paused_until": 0.0, "wait_credit": False, "synced": None,
                                        "sync_sent": 0.0, "sync_answered": 0.0}
        return st

    def _cost(self, op, payload):
        """PROTOCOL.md §8.1: an upper bound of the tokens the message puts into the queue."""
        if op == "TEXT":
            return len(payload) + self.separator_tokens
        if op == "TOKENS":
            return len(payload) // 4
        return 0 if op in ("CANCEL", "SYNC") else 1

    def _set_credit(self, st, credit):
        st["credit"] = credit
        st["queue"] = max(st["queue"], credit)

    def _queue(self, channel, op, payload):
        if self._next_seq is None:
            acked, _ = self.sync(channel)
            self._next_seq = acked + 1
        while len(self._pending) >= self.window:
            self._pump(0.1)
        seq = self._next_seq
        self._next_seq += 1
        self._pending[seq] = _Entry(channel, op, seq, payload, self._cost(op, payload))
        self._pump(0)
        return seq

    def _send(self, channel, op, seq, payload):
        frames = [SIGNATURE, op.encode(), channel.encode("ascii"), self.producer.encode("ascii"), str(seq).encode()]
        if payload is not None:
            frames.append(payload)
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _send_some(self):
        now = time.monotonic()
        blocked = set()
        for e in self._pending.values():
            if e.sent or e.channel in blocked:
                continue
            st = self._state(e.channel)
            cost = min(e.cost, st["queue"]) if st["queue"] else e.cost
            if st["paused_until"] > now or st["credit"] is None or st["outstanding"] + cost > st["credit"]:
                blocked.add(e.channel)  # keep per-channel order: nothing later goes first
                # §8.1 step 5: nothing in flight and it does not fit: SYNC, unless one is on its
                # way, or its answer came and the unsolicited CREDIT is awaited (1 s at most)
                if st["paused_until"] <= now and not st["in_flight"] and not st["sync_sent"] and \
                        (not st["sync_answered"] or now - st["sync_answered"] >= 1.0):
                    if self._send(e.channel, "SYNC", 0, None):
                        st["sync_sent"] = now
                elif st["sync_sent"] and now - st["sync_sent"] >= self.timeout:
                    st["sync_sent"] = 0.0  # its answer was lost: ask again
                continue
            if not self._send(e.channel, e.op, e.seq, e.payload):
                return
            if not any(x["in_flight"] for x in self._chan.values()):
                self._last_progress = now
            e.sent = True
            st["in_flight"] += 1
            st["outstanding"] += cost

    def _unsend(self, st, e):
        e.sent = False
        st["in_flight"] -= 1
        st["outstanding"] = max(0, st["outstanding"] - (min(e.cost, st["queue"]) if st["queue"] else e.cost))
        if not st["in_flight"]:
            st["outstanding"] = 0

    def _rewind(self, channel, from_seq=0):
        st = self._state(channel)
        for e in self._pending.values():
            if e.channel == channel and e.seq >= from_seq and e.sent:
                self._unsend(st, e)

    def _pump(self, timeout):
        self._send_some()
        end = time.monotonic() + max(timeout, 0)
        while True:
            left = end - time.monotonic()
            if self._sock.poll(max(0, int(left * 1000))) and True:
                while True:
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle(frames)
            now = time.monotonic()
            if any(st["in_flight"] for st in self._chan.values()) and now - self._last_progress >= self.timeout:
                for ch, st in self._chan.items():  # nothing heard: resend everything unanswered
                    self._rewind(ch)
                    st["credit"] = None
                    st["sync_sent"] = st["sync_answered"] = 0.0
                self._last_progress = now
            self._send_some()
            if time.monotonic() >= end:
                return

    def _handle(self, frames):
        if frames and frames[0] == b"":
            frames = frames[1:]
        if len(frames) < 2 or frames[0] != SIGNATURE:
            raise ProtocolError("reply without the RWKV1 signature: %r" % frames[:2])
        kind = frames[1]
        self._last_progress = time.monotonic()
        if kind in (b"ACK", b"DUP") and len(frames) == 7:
            ch = frames[2].decode("ascii")
            seq, acked, credit = _uint(frames[4], "seq"), _uint(frames[5], "acked"), _uint(frames[6], "credit")
            self._covered(ch, acked, seq)
            st = self._state(ch)
            self._set_credit(st, credit)
            st["sync_answered"] = 0.0
            self._backoff = 0.0
        elif kind == b"CREDIT" and len(frames) == 6:
            ch = frames[2].decode("ascii")
            acked, credit = _uint(frames[4], "acked"), _uint(frames[5], "credit")
            st = self._state(ch)
            self._set_credit(st, credit)
            st["synced"] = (acked, credit)
            # the answer to our SYNC: an unsolicited CREDIT follows when the queue drains;
            # an unsolicited one: SYNC again if the next message still does not fit
            st["sync_answered"] = time.monotonic() if st["sync_sent"] else 0.0
            st["sync_sent"] = 0.0
            self._covered(ch, acked, None)
            if st["wait_credit"]:
                st["wait_credit"] = False
                st["paused_until"] = 0.0
        elif kind == b"ERROR" and len(frames) == 7:
            self._error(frames)
        else:
            raise ProtocolError("unexpected reply %r with %d frames" % (kind, len(frames)))

    def _covered(self, channel, acked, seq):
        st = self._state(channel)
        st["acked"] = max(st["acked"], acked)
        done = [s for s, e in self._pending.items() if e.channel == channel and (s <= acked or s == seq)]
        for s in done:
            e = self._pending.pop(s)
            if e.sent:
                self._unsend(st, e)

    def _error(self, frames):
        ch = frames[2].decode("ascii") if frames[2] else None
        code = int(frames[5])
        text = frames[6].decode("utf-8", "replace")
        seq = _uint(frames[4], "seq") if frames[4] else None
        if code == 505:
            raise ProtocolError("the daemon does not speak RWKV1: " + text)
        e = self._pending.get(seq) if seq is not None else next((x for x in self._pending.values() if x.sent), None)
        if e is None:
            return
        st = self._state(e.channel)
        if e.sent:
            self._unsend(st, e)
        now = time.monotonic()
        if code == NO_CREDIT:
            self._rewind(e.channel, e.seq)
            st["wait_credit"] = True
            st["paused_until"] = now + 1.0  # resend after CREDIT, or after 1 s without it
            st["credit"] = 0
        elif code in RETRY_BACKOFF:
            self._rewind(e.channel, e.seq)
            self._backoff = min(self._backoff * 2 or 0.1, 5.0)
            st["paused_until"] = now + self._backoff
            st["credit"] = None
        elif code == PAUSED:
            if st["paused_until"] <= now:
                # paused at a seq whose error we missed: resend from the oldest we hold; if that
                # is this very message, the paused seq is gone and SYNC ends the pause
                oldest = min((x.seq for x in self._pending.values() if x.channel == e.channel), default=e.seq)
                self._rewind(e.channel)
                if oldest == e.seq:
                    self._send(e.channel, "SYNC", 0, None)
                st["paused_until"] = now + 0.1
                st["credit"] = None
        else:
            del self._pending[e.seq]
            self._errors.append((e.seq, code, text))

    def _raise_errors(self):
        if self._errors:
            errors, self._errors = self._errors, []
            raise RejectedError(errors)


class Subscriber:
    """SUB socket on the PUBLISH endpoint; prefixes select channels ("" or none: all).

    With ``recover`` (the default) it keeps, per channel, the highest ``oseq`` delivered and
    follows §9.7: a publication more than one above it makes it ask control ``REPLAY``
    (``control``: a Control or its endpoint; default the local one) for the ones in between
    and deliver those first; a publication not above it is a duplicate and skipped. It starts
    from the channels' current ``oseq`` (control ``CHANNELS``, before it connects): output
    from now on, and all of the output of channels created later. After a reconnect to PUBLISH
    (a daemon restart, a failover) it lists the channels again, ``reconnect_delay`` seconds
    later (so that its subscription has reached the daemon), and asks ``REPLAY`` for every one
    with output it has not delivered. What the daemon no longer retained is appended to
    ``lost`` as (channel, first, last). When the control endpoint does not answer at the start,
    a channel's output before its first publication received here is not fetched.
    """

    def __init__(self, endpoint=None, prefixes=("",), context=None, recover=True, control=None,
                 reconnect_delay=0.3, sockopts=None):
        self.endpoint = endpoint or default_endpoint("publish")
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        _secure(self._sock)  # keys only: the monitor below (recover) replaces its watch
        watch = _secure(self._sock)  # keys; the monitor below (recover) replaces this watch
        if watch is not None:
            watch.close(0)
        for opt, value in (sockopts or {}).items():  # e.g. {zmq.RECONNECT_IVL: 500}, before connect
            self._sock.setsockopt(opt, value)
        for p in prefixes or ("",):
            self._sock.setsockopt(zmq.SUBSCRIBE, p.encode("ascii"))
        self.recover = recover
        self.last = {}
        self.lost = []
        self.replays = 0   # REPLAY requests made
        self.replayed = 0  # publications delivered from REPLAY replies
        self._pending = []
        self._mon = None
        self._connects = 0
        self._replay_due = None
        self._reconnect_pending = False
        self._retry = set()
        self._control = control
        self._own_control = False
        self.reconnect_delay = reconnect_delay
        self._prefixes = [p for p in (prefixes or ("",))]
        self._baseline = False
        if recover:
            self._mon = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED)
            listed = self._list()
            if listed is not None:
                self.last.update(listed)
                self._baseline = True
        self._sock.connect(self.endpoint)

    def _list(self):
        """{channel: its latest oseq} of the channels the prefixes select, or None when the
        control endpoint does not answer."""
        out = {}
        try:
            for prefix in sorted(set(self._prefixes)):
                after = ""
                while True:
                    args = (prefix, after) if after else ((prefix,) if prefix else ())
                    status, body = self._ctl().command("CHANNELS", *args)
                    if status != 200:
                        return None
                    for ch in body["channels"]:
                        out[ch["name"]] = ch.get("oseq", 0)
                    if not body["more"] or not body["channels"]:
                        break
                    after = body["channels"][-1]["name"]
        except Timeout:
            return None
        return out

    def _ctl(self):
        if not isinstance(self._control, Control):
            self._control = Control(self._control, timeout=2.0, context=self._ctx)
            self._own_control = True
        return self._control

    def _replay(self, channel):
        """REPLAY after our last of `channel`; the publications go to the pending queue.
        False when the daemon did not answer (three tries: a request sent to a daemon that
        died is lost with its connection) or refused (404: it has no such channel now)."""
        last = self.last.get(channel, 0)
        for attempt in range(3):
            try:
                body, pubs = self._ctl().replay(channel, last)
                break
            except Timeout:
                continue
            except CommandError:
                return False
        else:
            return False
        self.replays += 1
        if body.get("lost"):
            self.lost.append((channel, body["lost"]["from"], body["lost"]["to"]))
        if body.get("recovering"):  # still publishing again what it had before a restart: ask later
            self._retry.add(channel)
            if self._replay_due is None:
                self._replay_due = time.monotonic() + self.reconnect_delay
        elif body["last"] < last:  # the channel's numbering started again (§9.7)
            self.last[channel] = body["last"]
            return True
        for pub in pubs:
            if pub.oseq > self.last.get(channel, 0):
                self._pending.append(pub)
                self.last[channel] = pub.oseq
                self.replayed += 1
        return True

    def _take(self, pub):
        """Apply §9.7 to one live publication: queue what it makes deliverable."""
        if not self.recover or pub.oseq is None:
            self._pending.append(pub)
            return
        last = self.last.get(pub.channel)
        if last is None and self._baseline:
            last = 0  # a channel newer than our start: all of its output is wanted
        if last is not None and pub.oseq <= last:
            return  # a duplicate: a restart published it again
        if last is not None and pub.oseq > last + 1:
            if not self._replay(pub.channel):  # not recoverable now: say so, go on
                self.lost.append((pub.channel, last + 1, pub.oseq - 1))
            if pub.oseq <= self.last.get(pub.channel, 0):
                return
        self._pending.append(pub)
        self.last[pub.channel] = pub.oseq

    def _after_reconnect(self):
        listed = self._list()
        if listed is None:  # control away: ask for every channel seen
            listed = {ch: None for ch in self.last}
        for channel, oseq in sorted(listed.items()):
            if oseq is None or oseq != self.last.get(channel, 0):
                self._replay(channel)

    def _monitor(self):
        from zmq.utils.monitor import recv_monitor_message
        while self._mon.poll(0):
            ev = recv_monitor_message(self._mon)
            if ev["event"] == zmq.EVENT_CONNECTED:
                self._connects += 1
                if self._connects > 1:
                    self._reconnect_pending = True
                    self._replay_due = time.monotonic() + self.reconnect_delay

    def recv(self, timeout=None):
        """The next publication, or None when timeout (seconds) passes first. Messages with
        another signature or a '$' topic are skipped (§9)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        if self._mon is not None:
            poller.register(self._mon, zmq.POLLIN)
        while True:
            if self._pending:
                return self._pending.pop(0)
            now = time.monotonic()
            if self._replay_due is not None and now >= self._replay_due:
                self._replay_due = None
                retry, self._retry = self._retry, set()
                if self._reconnect_pending:
                    self._reconnect_pending = False
                    self._after_reconnect()
                for channel in sorted(retry):
                    self._replay(channel)
                continue
            waits = [t for t in (deadline, self._replay_due) if t is not None]
            left = None if not waits else max(0, min(waits) - now)
            ready = dict(poller.poll(None if left is None else int(left * 1000) + 1))
            if self._mon is not None and self._mon in ready:
                self._monitor()
            if self._sock in ready:
                pub = decode_publication(self._sock.recv_multipart())
                if pub is not None:
                    self._take(pub)
            elif not ready and deadline is not None and time.monotonic() >= deadline and not self._pending:
                return None

    def __iter__(self):
        while True:
            pub = self.recv()
            if pub is not None:
                yield pub

    def close(self):
        if self._mon is not None:
            self._sock.disable_monitor()
            self._mon.close(0)
            self._mon = None
        self._sock.close(0)
        if self._own_control:
            self._control.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def decode_publication(frames):
    """Frames of one publish message -> Publication, or None to skip it."""
    if len(frames) < 6 or frames[1] != SIGNATURE or frames[0][:1] == b"$":
        return None
    channel, kind = frames[0].decode("ascii"), frames[2].decode("ascii", "replace")
    producer = frames[3].decode("ascii")
    seq, seen = _uint(frames[4], "seq"), _uint(frames[5], "tokens_seen")
    index = piece = code = text = body = oseq = None
    want = {"CLASS": 7, "END": 7, "TEXT": 8, "ERROR": 8}.get(kind)
    if want is None:
        return None  # a later kind (§13): ignored
    if len(frames) not in (want, want + 1):
        raise ProtocolError("%s publication with %d frames" % (kind, len(frames)))
    if len(frames) == want + 1:  # the output sequence number (§9.7)
        oseq = _uint(frames[want], "oseq")
    if kind in ("CLASS", "END"):
        body = json.loads(frames[6].decode("utf-8"))
    elif kind == "TEXT":
        index, piece = _uint(frames[6], "index"), frames[7].decode("utf-8")
    else:
        code, text = int(frames[6]), frames[7].decode("utf-8")
    return Publication(channel, kind, producer, seq, seen, index, piece, code, text, body, oseq)


def split_replay(blob):
    """Frame 3 of a REPLAY reply (§10.3) -> a list of publications, each a list of frames."""
    pubs, off = [], 0
    while off < len(blob):
        n, = struct.unpack_from("<I", blob, off)
        off += 4
        frames = []
        for _ in range(n):
            ln, = struct.unpack_from("<I", blob, off)
            if off + 4 + ln > len(blob):
                raise ProtocolError("REPLAY reply: a frame runs past the end")
            frames.append(blob[off + 4:off + 4 + ln])
            off += 4 + ln
        pubs.append(frames)
    return pubs


class Control:
    """REQ socket on the CONTROL endpoint."""

    def __init__(self, endpoint=None, timeout=5.0, context=None):
        self.endpoint = endpoint or default_endpoint("control")
        self.timeout = timeout
        self._ctx = context or zmq.Context.instance()
        self._sock = None
        self._mon = None

    def _connect(self):
        self._sock = self._ctx.socket(zmq.REQ)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._mon = _secure(self._sock)
        self._sock.connect(self.endpoint)

    def _request(self, name, args):
        if self._sock is None:
            self._connect()
        frames = [SIGNATURE, name.upper().encode("ascii")]
        frames += [a if isinstance(a, (bytes, bytearray, memoryview)) else a.encode("ascii") for a in args]
        self._sock.send_multipart(frames)
        if not self._sock.poll(int(self.timeout * 1000)):
            why = _why(self._mon)
            if self._mon is not None:
                self._mon.close(0)
            self._sock.close(0)
            self._sock = None
            raise Timeout("no reply to %s from %s within %.1fs%s" % (name, self.endpoint, self.timeout, why))
        frames = self._sock.recv_multipart()
        image = None
        if len(frames) == 4 and frames[0] == SIGNATURE and frames[1] == b"200" and name.upper() in ("EXPORT", "REPLAY"):
            image = frames[3]
        elif len(frames) != 3 or frames[0] != SIGNATURE:
            raise ProtocolError("malformed control reply to %s: %d frames %r" % (name, len(frames), frames[:3]))
        status, body = int(frames[1]), frames[2].decode("utf-8")
        if status == 200 and name.upper() != "METRICS":
            body = json.loads(body)
        return status, body, image

    def command(self, name, *args):
        """command("INFO", "app/x") -> (status, body): body is the parsed JSON for 200 (text for
        METRICS), the reason text otherwise; arguments are str (names) or bytes (an IMPORT
        image). Raises Timeout when no reply comes in time (the socket is then recreated, since
        a REQ that lost its reply cannot send again). EXPORT's image: use export()."""
        status, body, _ = self._request(name, args)
        return status, body

    def export(self, channel):
        """The channel's state as a snapshot image (bytes; PROTOCOL.md section 10.4). Raises
        CommandError with the daemon's status and reason when refused."""
        status, body, image = self._request("EXPORT", (channel,))
        if status != 200 or not image:
            raise CommandError(status, body if status != 200 else "200 reply without an image")
        return image

    def import_state(self, channel, image):
        """Create or replace `channel` from an image exported by export() (here or on another
        daemon of the same model). Returns the reply body; raises CommandError when refused."""
        status, body, _ = self._request("IMPORT", (channel, bytes(image)))
        if status != 200:
            raise CommandError(status, body)
        return body

    def fork(self, source, new):
        """Create channel `new` with a copy of `source`'s state; raises CommandError when refused."""
        status, body, _ = self._request("FORK", (source, new))
        if status != 200:
            raise CommandError(status, body)
        return body

    def replay(self, channel, after):
        """REPLAY (§9.7): (body, [Publication]) — the channel's retained publications with an
        oseq above `after`, in order; body names what is no longer retained (`lost`). Raises
        CommandError when refused (404: unknown channel)."""
        status, body, blob = self._request("REPLAY", (channel, str(int(after))))
        if status != 200:
            raise CommandError(status, body)
        pubs = [decode_publication(f) for f in split_replay(blob or b"")]
        return body, [p for p in pubs if p is not None]

    def close(self):
        if self._mon is not None:
            self._mon.close(0)
            self._mon = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
