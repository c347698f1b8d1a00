#!/usr/bin/python3
"""A strict parser of the Prometheus text exposition format 0.0.4, for the tests.

parse(text) returns {family: {"type": T, "help": H, "samples": {(name, labels): value}}}
where labels is a sorted tuple of (key, value) pairs, or raises ValueError naming the line
and what is wrong with it. Stricter than Prometheus itself where rwkvd should be tidy:
every sample belongs to a family announced by # HELP and # TYPE before its first sample,
a family's samples are contiguous, no series repeats, counters end in _total and are
finite and non-negative, and the text ends with a newline.

Usage as a program: promtext.py FILE  (exit 0 and a summary, or 1 and the error); '-' is stdin.
"""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


def _value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.match(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\Z", s):
        raise ValueError("%s: bad sample value %r" % (where, s))
    return float(s)


def _labels(s, where):
    """s is the text between { and }; returns the sorted pairs."""
    pairs, i, n = [], 0, len(s)
    while i < n:
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", s[i:])
        if not m:
            raise ValueError("%s: bad label at %r" % (where, s[i:]))
        key = m.group(1)
        i += m.end()
        val = []
        while True:
            if i >= n:
                raise ValueError("%s: unterminated label value of %s" % (where, key))
            c = s[i]
            if c == "\\":
                if i + 1 >= n or s[i + 1] not in '\\"n':
                    raise ValueError("%s: bad escape in label %s" % (where, key))
                val.append("\n" if s[i + 1] == "n" else s[i + 1])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ValueError("%s: newline in label %s" % (where, key))
            else:
                val.append(c)
                i += 1
        if any(k == key for k, _ in pairs):
            raise ValueError("%s: label %s repeated" % (where, key))
        pairs.append((key, "".join(val)))
        if i < n:
            if s[i] != ",":
                raise ValueError("%s: expected ',' between labels, got %r" % (where, s[i:]))
            i += 1
    return tuple(sorted(pairs))


def _family_of(name, families):
    if name in families:
        return name
    for fam, info in families.items():
        for suf in SUFFIXES.get(info["type"], ()):
            if suf and name == fam + suf:
                return fam
    return None


def _check_histogram(fam, samples):
    """Per label set: an le="+Inf" bucket equal to _count, cumulative (non-decreasing) buckets."""
    groups = {}
    for (name, labels), v in samples.items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        g = groups.setdefault(rest, {"buckets": [], "count": None, "sum": None})
        if name == fam + "_bucket":
            le = dict(labels).get("le")
            if le is None:
                raise ValueError("histogram %s: a bucket without le" % fam)
            g["buckets"].append((_value(le, fam), v))
        elif name == fam + "_count":
            g["count"] = v
        elif name == fam + "_sum":
            g["sum"] = v
        else:
            raise ValueError("histogram %s: unexpected series %s" % (fam, name))
    for rest, g in groups.items():
        b = sorted(g["buckets"])
        if not b or b[-1][0] != math.inf:
            raise ValueError("histogram %s%s: no le=\"+Inf\" bucket" % (fam, dict(rest)))
        if g["count"] is None or g["sum"] is None:
            raise ValueError("histogram %s%s: _count or _sum missing" % (fam, dict(rest)))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            raise ValueError("histogram %s%s: buckets are not cumulative: %r" % (fam, dict(rest), b))
        if b[-1][1] != g["count"]:
            raise ValueError("histogram %s%s: +Inf bucket %r != _count %r" % (fam, dict(rest), b[-1][1], g["count"]))


def parse(text):
    if not text.endswith("\n"):
        raise ValueError("the text does not end with a newline")
    families, current, closed = {}, None, set()
    for no, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d" % no
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 4 or not NAME.match(parts[2]):
                    raise ValueError("%s: malformed # %s line %r" % (where, parts[1], line))
                fam = parts[2]
                if fam in closed:
                    raise ValueError("%s: family %s announced again after its samples" % (where, fam))
                info = families.setdefault(fam, {"type": None, "help": None, "samples": {}})
                if info["samples"]:
                    raise ValueError("%s: # %s for %s after its samples" % (where, parts[1], fam))
                key = parts[1].lower()
                if info[key] is not None:
                    raise ValueError("%s: second # %s for %s" % (where, parts[1], fam))
                if key == "type" and parts[3] not in TYPES:
                    raise ValueError("%s: unknown type %r" % (where, parts[3]))
                info[key] = parts[3]
                if current and current != fam:
                    closed.add(current)
                current = fam
            continue  # other comments are allowed
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)( -?\d+)?\Z", line)
        if not m:
            raise ValueError("%s: not a sample line: %r" % (where, line))
        name, labels = m.group(1), _labels(m.group(3) or "", where)
        value = _value(m.group(4), where)
        fam = _family_of(name, families)
        if fam is None:
            raise ValueError("%s: sample %s has no # HELP/# TYPE before it" % (where, name))
        info = families[fam]
        if info["type"] is None or info["help"] is None:
            raise ValueError("%s: family %s lacks # %s" % (where, fam, "TYPE" if info["type"] is None else "HELP"))
        if fam in closed:
            raise ValueError("%s: samples of %s are not contiguous" % (where, fam))
        if current != fam:
            if current:
                closed.add(current)
            current = fam
        if (name, labels) in info["samples"]:
            raise ValueError("%s: series %s%s repeated" % (where, name, dict(labels)))
        if info["type"] == "counter":
            if not name.endswith("_total"):
                raise ValueError("%s: counter %s does not end in _total" % (where, name))
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError("%s: counter %s = %r" % (where, name, value))
        info["samples"][(name, labels)] = value
    for fam, info in families.items():
        if info["type"] == "histogram":
            _check_histogram(fam, info["samples"])
        if info["type"] is None or info["help"] is None:  # a family with no samples (allowed) still needs both
            raise ValueError("family %s lacks # %s" % (fam, "TYPE" if info["type"] is None else "HELP"))
    return families


def value(families, name, **labels):
    """The value of one series (KeyError if it is absent)."""
    fam = _family_of(name, families)
    if fam is None:
        raise KeyError(name)
    return families[fam]["samples"][(name, tuple(sorted(labels.items())))]


if __name__ == "__main__":
    data = sys.stdin.read() if sys.argv[1:] in ([], ["-"]) else open(sys.argv[1]).read()
    try:
        fams = parse(data)
    except ValueError as e:
        print("invalid Prometheus text: %s" % e)
        sys.exit(1)
    print("ok: %d families, %d series" % (len(fams), sum(len(f["samples"]) for f in fams.values())))
