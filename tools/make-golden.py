#!/usr/bin/env python3
"""Build (or --check) the golden-logit fixtures of tests/golden from tests/golden/cases.txt
(RWKV-7, reference ref64.py) and tests/golden/cases-legacy.txt (RWKV-4/5/6, ref64_legacy.py).

What it is: for each case line it generates the checkpoint with gen-checkpoint.py (into a
temporary directory), runs the float64 reference ref64.py from the zero state over the case's
tokens, and writes tests/golden/<name>.f32 (T rows x V little-endian float32 logits).
It also proves the fixtures can catch bugs: every mutation of ref64.MUTATIONS (and
ref64_legacy.MUTATIONS for its generations) must move the logits of every step after the
first (RWKV-4/5/6: the second) by more than --min-diff (the first steps run from the zero
state, where decay and state-index bugs cannot show). What it is not: a test of the C
engine; tests/meson.build does that. Invariant: fixtures depend only on cases.txt and the
tools, never on the machine (generator is arithmetic-only; see gen-checkpoint.py).

Usage: make-golden.py [--cases FILE] [--outdir DIR] [--check] [--only NAME ...]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import ref64  # noqa: E402
import ref64_legacy  # noqa: E402

FIELDS = ("name", "dtype", "L", "C", "N", "F", "V", "d_w", "d_a", "d_v", "d_g", "layer0_v",
          "seed", "scale", "tokens")
OPTIONAL = ("ffn_sparse",)  # may follow the tokens
CHECK_TOL = 1e-5  # regenerated vs committed fixture (float64 BLAS order may move a last bit)


class Case:
    def __init__(self, fields, where):
        if not len(FIELDS) <= len(fields) <= len(FIELDS) + len(OPTIONAL):
            raise ValueError("%s: expected %d fields (%s) and optionally %s, got %d"
                             % (where, len(FIELDS), " ".join(FIELDS), " ".join(OPTIONAL), len(fields)))
        f = dict(zip(FIELDS + OPTIONAL, fields))
        self.ffn_sparse_str = f.get("ffn_sparse", "0")
        self.name = f["name"]
        self.dtype = f["dtype"]
        if self.dtype not in ("fp32", "fp16", "bf16", "mixed"):
            raise ValueError("%s: bad dtype %r" % (where, self.dtype))
        try:
            for k in ("L", "C", "N", "F", "V", "d_w", "d_a", "d_v", "d_g", "layer0_v", "seed"):
                setattr(self, k, int(f[k]))
            self.scale = float(f["scale"])
            if not 0.0 <= float(self.ffn_sparse_str) <= 1.0:
                raise ValueError("ffn_sparse %s is not in [0, 1]" % self.ffn_sparse_str)
            self.scale_str = f["scale"]
            self.tokens = ref64.parse_tokens(f["tokens"])
        except ValueError as e:
            raise ValueError("%s: %s" % (where, e))
        self.tokens_str = f["tokens"]
        if not self.tokens or any(not 0 <= t < self.V for t in self.tokens):
            raise ValueError("%s: tokens must be non-empty and in [0, %d)" % (where, self.V))

    def gen_args(self, out):
        return ["--out", out, "--dtype", self.dtype, "--layers", str(self.L), "--embd", str(self.C),
                "--head-size", str(self.N), "--ffn", str(self.F), "--vocab", str(self.V),
                "--ranks", "%d,%d,%d,%d" % (self.d_w, self.d_a, self.d_v, self.d_g),
                "--layer0-v", str(self.layer0_v), "--seed", str(self.seed),
                "--scale", self.scale_str, "--ffn-sparse", self.ffn_sparse_str]


LEGACY_FIELDS = ("name", "arch", "dtype", "L", "C", "N", "F", "V", "d_decay", "d_mix", "seed", "scale",
                 "tokens")


class LegacyCase:
    """A line of cases-legacy.txt."""

    def __init__(self, fields, where):
        if len(fields) != len(LEGACY_FIELDS):
            raise ValueError("%s: expected %d fields (%s), got %d"
                             % (where, len(LEGACY_FIELDS), " ".join(LEGACY_FIELDS), len(fields)))
        f = dict(zip(LEGACY_FIELDS, fields))
        self.name, self.arch, self.dtype = f["name"], f["arch"], f["dtype"]
        if self.arch not in ("4", "5.0", "5.1", "5.2", "6"):
            raise ValueError("%s: bad arch %r" % (where, self.arch))
        if self.dtype not in ("fp32", "fp16", "bf16", "mixed"):
            raise ValueError("%s: bad dtype %r" % (where, self.dtype))
        try:
            for k in ("L", "C", "N", "F", "V", "d_decay", "d_mix", "seed"):
                setattr(self, k, int(f[k]))
            self.scale_str = f["scale"]
            float(self.scale_str)
            self.tokens = ref64.parse_tokens(f["tokens"])
        except ValueError as e:
            raise ValueError("%s: %s" % (where, e))
        if not self.tokens or any(not 0 <= t < self.V for t in self.tokens):
            raise ValueError("%s: tokens must be non-empty and in [0, %d)" % (where, self.V))

    def gen_args(self, out):
        return ["--out", out, "--arch", self.arch, "--dtype", self.dtype, "--layers", str(self.L),
                "--embd", str(self.C), "--head-size", str(self.N), "--ffn", str(self.F),
                "--vocab", str(self.V), "--decay-rank", str(self.d_decay), "--mix-rank", str(self.d_mix),
                "--seed", str(self.seed), "--scale", self.scale_str]


def read_cases(path, legacy=False):
    cases = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            cases.append((LegacyCase if legacy else Case)(s.split(), "%s:%d" % (path, n)))
    names = [c.name for c in cases]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ValueError("%s: duplicate case names %s" % (path, ", ".join(dup)))
    return cases


def generate(case, tmpdir):
    ckpt = os.path.join(tmpdir, case.name + ".pth")
    subprocess.run([sys.executable, os.path.join(TOOLS, "gen-checkpoint.py")] + case.gen_args(ckpt),
                   check=True, stderr=subprocess.DEVNULL)
    if isinstance(case, LegacyCase):
        return ref64_legacy.Model(ckpt)
    return ref64.Model(ckpt)


def mutations(case):
    return ref64_legacy.MUTATIONS if isinstance(case, LegacyCase) else ref64.MUTATIONS


def sensitivity(model, case, clean):
    """mutation -> (min over steps >= 1, max over all steps) of the per-step max |diff|;
    None where the mutation cannot apply (value residual with one layer, another generation's
    detail). A mutation that makes the logits non-finite counts as an infinite change."""
    out = {}
    legacy = isinstance(case, LegacyCase)
    for mut in mutations(case):
        if (mut == "no_value_residual" and case.L < 2) or (legacy and case.arch not in ref64_legacy.MUTATIONS[mut][1]):
            out[mut] = None
            continue
        model.mutation = mut
        try:
            with np.errstate(all="ignore"):
                diff = np.nan_to_num(np.abs(model.run(case.tokens) - clean), nan=np.inf).max(axis=1)
        finally:
            model.mutation = None
        # RWKV-7 decays the state before reading it, so step 2 shows decay bugs; RWKV-4/5/6
        # read before decaying, so their decay (and the v6 decay LoRA) shows from step 3
        first = 2 if legacy else 1
        later = diff[first:] if len(diff) > first else diff
        out[mut] = (float(later.min()), float(diff.max()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="build or check the golden-logit fixtures")
    ap.add_argument("--cases", default=os.path.join(REPO, "tests", "golden", "cases.txt"))
    ap.add_argument("--legacy-cases", default=os.path.join(REPO, "tests", "golden", "cases-legacy.txt"),
                    help="RWKV-4/5/6 cases ('' for none)")
    ap.add_argument("--outdir", default=None, help="default: the directory of --cases")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and compare with the committed fixtures")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these cases")
    ap.add_argument("--min-diff", type=float, default=1e-3,
                    help="required logit change of every mutation (default 1e-3)")
    ap.add_argument("--no-sensitivity", action="store_true", help="skip the mutation check")
    args = ap.parse_args(argv)

    cases = read_cases(args.cases)
    if args.legacy_cases:
        cases += read_cases(args.legacy_cases, legacy=True)
    if args.only:
        unknown = set(args.only) - {c.name for c in cases}
        if unknown:
            ap.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
        cases = [c for c in cases if c.name in args.only]
    fixdir = args.outdir or os.path.dirname(os.path.abspath(args.cases))

    failures = []
    table = []
    with tempfile.TemporaryDirectory(prefix="make-golden-") as tmp:
        for case in cases:
            model = generate(case, tmp)
            logits = model.run(case.tokens)
            data = logits.astype("<f4")
            if args.check:
                path = os.path.join(fixdir, case.name + ".f32")
                if not os.path.exists(path):
                    failures.append("%s: fixture %s missing" % (case.name, path))
                else:
                    old = np.fromfile(path, dtype="<f4")
                    if old.size != data.size:
                        failures.append("%s: fixture has %d floats, expected %d"
                                        % (case.name, old.size, data.size))
                    else:
                        d = float(np.abs(old.astype(np.float64) - data.reshape(-1)).max())
                        same = old.tobytes() == data.tobytes()
                        print("%-28s %s max|diff| %.3g" % (case.name, "identical" if same else "differs", d))
                        if d > CHECK_TOL:
                            failures.append("%s: regenerated logits differ by %.3g" % (case.name, d))
            else:
                os.makedirs(fixdir, exist_ok=True)
                path = os.path.join(fixdir, case.name + ".f32")
                data.tofile(path)
                print("%-28s %2d tokens x %6d  %8d bytes  max|logit| %.2f"
                      % (case.name, len(case.tokens), case.V, data.nbytes, float(np.abs(logits).max())))
            if not args.no_sensitivity:
                sens = sensitivity(model, case, logits)
                table.append((case.name, sens, isinstance(case, LegacyCase)))
                for mut, v in sens.items():
                    if v is not None and v[0] <= args.min_diff:
                        failures.append("%s: mutation %s moves the logits by only %.3g"
                                        % (case.name, mut, v[0]))

    for kind, tab in (("RWKV-7", [t for t in table if not t[2]]), ("RWKV-4/5/6", [t for t in table if t[2]])):
        print_table(kind, [(n, s) for n, s, _ in tab], args.min_diff)
    if failures:
        for f in failures:
            print("FAIL: " + f, file=sys.stderr)
        return 1
    return 0


def print_table(kind, table, min_diff):
    if table:
        muts = list(table[0][1])
        print("\n%s sensitivity: min over the later steps of max|logit diff| per mutation (must exceed %g)"
              % (kind, min_diff))
        w = max(len(n) for n, _ in table)
        print("%-*s " % (w, "case") + " ".join("%11s" % m[:11] for m in muts))
        for name, sens in table:
            print("%-*s " % (w, name) + " ".join(
                "%11s" % ("n/a" if sens[m] is None else "%.3g" % sens[m][0]) for m in muts))
        mins = {m: min(s[m][0] for _, s in table if s[m] is not None) for m in muts
                if any(s[m] is not None for _, s in table)}
        print("%-*s " % (w, "MIN") + " ".join("%11s" % ("%.3g" % mins[m] if m in mins else "n/a")
                                              for m in muts))


if __name__ == "__main__":
    sys.exit(main())
