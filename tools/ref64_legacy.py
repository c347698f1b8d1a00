#!/usr/bin/env python3
"""Float64 reference of the one-token step of the older RWKV generations: RWKV-4, RWKV-5
(5.0, 5.1, 5.2) and RWKV-6, the sibling of ref64.py (which is RWKV-7 only).

What it is: the oracle the legacy golden fixtures come from, and the proof (against the
shared tiny models' expected logits) that the math below is the math those checkpoints were
trained with. Plain numpy, one token at a time, float64 throughout except where the released
inference code fixes a float32 step (none is needed here: float64 is the ideal those float32
results approximate). What it is not: fast, or a copy of any upstream implementation.

Version detection (detect_version) follows the tensor names and shapes, as the official
`rwkv` pip package does: att.ln_x -> 5.0; att.gate -> 5.1; a 2-D att.time_decay with more
than one column -> 5.2; att.time_maa_* -> 6; otherwise 4.

The math, per layer (x: the residual stream, u = LN1(x), p: the previous token's u):
  v4   mix_q = u*m_q + p*(1-m_q) for q in k,v,r; r = sigmoid(Wr mix_r), k = Wk mix_k,
       v = Wv mix_v; per channel with state (a, b, q) and w = -exp(time_decay):
         wkv = (e^(q') a + e^(first+k-q') v) / (e^(q') b + e^(first+k-q')) (max-shifted)
         a <- e^(w+q-q'') a + e^(k-q'') v; b likewise; q <- q'' = max(w+q, k)
       x += Wo (r * wkv)
  v5.x same mixes (plus g from 5.1); per head, S (N key rows x N value columns):
         y_j = sum_i r_i (u_i k_i v_j + S_ij);  S_ij <- k_i v_j + w_i S_ij
       w = exp(-exp(time_decay)) (per head for 5.0/5.1, per channel for 5.2); u = the bonus:
       exp(time_first), or time_faaaa as stored; y -> GroupNorm(H, eps 64e-5) -> * silu(g)
  v6   data-dependent shift: d = p - u; xx = u + d*maa_x; m_{w,k,v,r,g} = tanh(xx W1) W2[i];
       mix_q = u + d*(maa_q + m_q); decay per token w = exp(-exp(time_decay + tanh(mix_w D1) D2));
       the rest as v5.2.
  FFN  (all three) r = sigmoid(Wr mix_r); x += r * (Wv relu(Wk mix_k)^2), with the mixes
       of the version (v6: u + d*maa_q).
ln0 is applied to the embedding row before the first layer.

CLI: ref64_legacy.py --model M.pth --tokens 1,2,3 --out OUT.f32
"""

import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv_pth  # noqa: E402

LN_EPS = 1e-5
GN_EPS = 64e-5

# Deliberate bugs for make-golden.py's sensitivity check: name -> (what, versions it applies to).
MUTATIONS = {
    "no_max_trick": ("v4 without the max shift: exp() of raw keys in float32 (overflow -> inf/nan)", ("4",)),
    "v4_no_first": ("v4 bonus time_first dropped from the current token's weight", ("4",)),
    "mix_swap_kr": ("time mix: k uses r's mix and r uses k's", ("4", "5.0", "5.1", "5.2", "6")),
    "mix_v7": ("token shift as u + (p-u)*m instead of u*m + p*(1-m)", ("4", "5.0", "5.1", "5.2")),
    "gn_eps_1e-5": ("GroupNorm eps 1e-5 instead of 64e-5", ("5.0", "5.1", "5.2", "6")),
    "no_bonus": ("bonus u dropped from the read-out", ("5.0", "5.1", "5.2", "6")),
    "rolled_heads": ("head h uses head (h+1) mod H's decay and bonus", ("5.0", "5.1", "5.2", "6")),
    "decay_on_value": ("state decay along the value index instead of the key index", ("5.2", "6")),
    "readout_T": ("read-out y_j = sum_i r_i S_ji (state index transposed)", ("5.0", "5.1", "5.2", "6")),
    "zero_maa_lora": ("v6 token-shift LoRA zeroed", ("6",)),
    "maa_order": ("v6 LoRA outputs taken in the order k, w, v, r, g", ("6",)),
    "no_maa_x": ("v6 maa_x ignored (LoRA input is u)", ("6",)),
    "zero_decay_lora": ("v6 decay LoRA zeroed", ("6",)),
    "ffn_no_receptance": ("FFN receptance gate dropped", ("4", "5.0", "5.1", "5.2", "6")),
    "ln0_skipped": ("ln0 not applied to the embedding", ("4", "5.0", "5.1", "5.2", "6")),
}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def layer_norm(x, w, b, eps=LN_EPS):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def detect_version(t):
    """'4' | '5.0' | '5.1' | '5.2' | '6' from the tensor names and shapes, or None."""
    keys = list(t)
    if any(".time_maa" in k for k in keys):
        return "6"
    if "blocks.0.att.ln_x.weight" in t:
        td = t.get("blocks.0.att.time_decay")
        if td is not None and td.ndim >= 2 and td.shape[1] > 1:
            return "5.2"
        return "5.1" if "blocks.0.att.gate.weight" in t else "5.0"
    if "blocks.0.att.time_mix_k" in t and "blocks.0.att.time_decay" in t:
        return "4"
    return None


class Model:
    def __init__(self, path, mutation=None):
        if mutation is not None and mutation not in MUTATIONS:
            raise ValueError("unknown mutation %r" % (mutation,))
        self.mutation = mutation
        t = rwkv_pth.read_pth(path)
        self.version = detect_version(t)
        if self.version is None:
            raise ValueError("%s: not an RWKV-4/5/6 checkpoint" % (path,))
        self.n_vocab, self.n_embd = t["emb.weight"].shape
        C = self.n_embd
        self.n_layer = 1 + max(int(m.group(1)) for k in t for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
        if self.version == "4":
            self.n_head, self.head_size = 0, 0
        else:
            src = t["blocks.0.att.time_faaaa"] if self.version == "6" else t["blocks.0.att.time_decay"]
            self.n_head = src.shape[0]
            self.head_size = C // self.n_head
        self.emb_raw = t["emb.weight"]
        self.emb = layer_norm(t["emb.weight"], t["blocks.0.ln0.weight"].reshape(-1), t["blocks.0.ln0.bias"].reshape(-1))
        self.ln_out_w, self.ln_out_b = t["ln_out.weight"], t["ln_out.bias"]
        self.head = t["head.weight"]
        self.layers = []
        H = self.n_head
        for l in range(self.n_layer):
            p = "blocks.%d." % l

            def g(name, flat=True):
                a = t[p + name]
                return a.reshape(-1) if flat else a

            lay = {"ln1_w": g("ln1.weight"), "ln1_b": g("ln1.bias"), "ln2_w": g("ln2.weight"),
                   "ln2_b": g("ln2.bias"), "Wr": g("att.receptance.weight", False),
                   "Wk": g("att.key.weight", False), "Wv": g("att.value.weight", False),
                   "Wo": g("att.output.weight", False), "fWk": g("ffn.key.weight", False),
                   "fWv": g("ffn.value.weight", False), "fWr": g("ffn.receptance.weight", False)}
            if self.version == "6":
                for q in "xwkvrg":
                    lay["maa_" + q] = g("att.time_maa_" + q)
                lay["maa_w1"] = g("att.time_maa_w1", False)  # (C, 5D)
                lay["maa_w2"] = g("att.time_maa_w2", False)  # (5, D, C)
                lay["decay"] = g("att.time_decay")           # (C) raw
                lay["decay_w1"] = g("att.time_decay_w1", False)
                lay["decay_w2"] = g("att.time_decay_w2", False)
                lay["fmaa_k"], lay["fmaa_r"] = g("ffn.time_maa_k"), g("ffn.time_maa_r")
            else:
                for q in "kvr":
                    lay["mix_" + q] = g("att.time_mix_" + q)
                if self.version not in ("4", "5.0"):
                    lay["mix_g"] = g("att.time_mix_g")
                lay["fmix_k"], lay["fmix_r"] = g("ffn.time_mix_k"), g("ffn.time_mix_r")
            if self.version == "4":
                lay["w"] = -np.exp(g("att.time_decay"))
                lay["first"] = g("att.time_first")
            else:
                if self.version != "6":
                    td = g("att.time_decay")  # (H) or (H*N)
                    lay["w"] = np.repeat(np.exp(-np.exp(td)), C // td.size)
                if p + "att.time_faaaa" in t:
                    u = g("att.time_faaaa")
                else:
                    u = np.exp(g("att.time_first"))
                lay["u"] = np.repeat(u, C // u.size)
                lay["lnx_w"], lay["lnx_b"] = g("att.ln_x.weight"), g("att.ln_x.bias")
                if self.version != "5.0":
                    lay["Wg"] = g("att.gate.weight", False)
            self.layers.append(lay)

    def new_state(self):
        L, C = self.n_layer, self.n_embd
        st = {"p_att": np.zeros((L, C)), "p_ffn": np.zeros((L, C))}
        if self.version == "4":
            st["aa"] = np.zeros((L, C))
            st["bb"] = np.zeros((L, C))
            st["pp"] = np.full((L, C), -1e30)
        else:
            st["S"] = np.zeros((L, self.n_head, self.head_size, self.head_size))
        return st

    def _mix(self, u, p, m):
        if self.mutation == "mix_v7":
            return u + (p - u) * m
        return u * m + p * (1.0 - m)

    def _time_mix(self, l, lay, x, st):
        mut = self.mutation
        u = layer_norm(x, lay["ln1_w"], lay["ln1_b"])
        p = st["p_att"][l].copy()
        st["p_att"][l] = u
        ver = self.version
        if ver == "6":
            d = p - u
            xx = u + d * lay["maa_x"] if mut != "no_maa_x" else u
            D = lay["maa_w2"].shape[1]
            h = np.tanh(xx @ lay["maa_w1"]).reshape(5, D)
            m = np.stack([h[i] @ lay["maa_w2"][i] for i in range(5)])
            if mut == "zero_maa_lora":
                m = m * 0.0
            if mut == "maa_order":
                m = m[[1, 0, 2, 3, 4]]
            mix = {q: u + d * (lay["maa_" + q] + m[i]) for i, q in enumerate("wkvrg")}
        else:
            mix = {q: self._mix(u, p, lay["mix_" + q]) for q in ("kvr" if ver in ("4", "5.0") else "kvrg")}
        if mut == "mix_swap_kr":
            mix["k"], mix["r"] = mix["r"], mix["k"]
        k = lay["Wk"] @ mix["k"]
        v = lay["Wv"] @ mix["v"]
        if ver == "4":
            r = sigmoid(lay["Wr"] @ mix["r"])
            aa, bb, pp = st["aa"][l], st["bb"][l], st["pp"][l]
            w, first = lay["w"], lay["first"]
            if mut == "no_max_trick":
                with np.errstate(over="ignore", invalid="ignore"):
                    f32 = np.float32
                    e = np.exp((first + k).astype(f32))
                    ep = np.exp(pp.astype(f32))
                    wkv = (ep * aa + e * v) / (ep * bb + e)
                    st["aa"][l] = np.exp((w + pp).astype(f32)) * aa + np.exp(k.astype(f32)) * v
                    st["bb"][l] = np.exp((w + pp).astype(f32)) * bb + np.exp(k.astype(f32))
                    st["pp"][l] = 0.0 * pp
            else:
                ww = (first if mut != "v4_no_first" else 0.0) + k
                q = np.maximum(pp, ww)
                e1, e2 = np.exp(pp - q), np.exp(ww - q)
                wkv = (e1 * aa + e2 * v) / (e1 * bb + e2)
                ww = w + pp
                q = np.maximum(ww, k)
                e1, e2 = np.exp(ww - q), np.exp(k - q)
                st["aa"][l] = e1 * aa + e2 * v
                st["bb"][l] = e1 * bb + e2
                st["pp"][l] = q
            return x + lay["Wo"] @ (r * wkv)
        r = lay["Wr"] @ mix["r"]
        H, N = self.n_head, self.head_size
        if ver == "6":
            z = lay["decay"] + np.tanh(mix["w"] @ lay["decay_w1"]) @ lay["decay_w2"] \
                if mut != "zero_decay_lora" else lay["decay"]
            w = np.exp(-np.exp(z))
        else:
            w = lay["w"]
        uu = lay["u"] if mut != "no_bonus" else lay["u"] * 0.0
        wh, uh = w.reshape(H, N), uu.reshape(H, N)
        if mut == "rolled_heads":
            wh, uh = np.roll(wh, -1, axis=0), np.roll(uh, -1, axis=0)
        rh, kh, vh = r.reshape(H, N), k.reshape(H, N), v.reshape(H, N)
        S = st["S"][l]  # (H, key i, value j)
        kv = kh[:, :, None] * vh[:, None, :]
        if mut == "readout_T":
            y = np.einsum("hi,hij->hj", rh, uh[:, :, None] * kv + S.transpose(0, 2, 1))
        else:
            y = np.einsum("hi,hij->hj", rh, uh[:, :, None] * kv + S)
        if mut == "decay_on_value":
            st["S"][l] = kv + wh[:, None, :] * S
        else:
            st["S"][l] = kv + wh[:, :, None] * S
        mu = y.mean(axis=1, keepdims=True)
        var = ((y - mu) ** 2).mean(axis=1, keepdims=True)
        eps = 1e-5 if mut == "gn_eps_1e-5" else GN_EPS
        yn = ((y - mu) / np.sqrt(var + eps)).reshape(-1) * lay["lnx_w"] + lay["lnx_b"]
        if ver != "5.0":
            gg = lay["Wg"] @ mix["g"]
            yn = yn * gg * sigmoid(gg)
        return x + lay["Wo"] @ yn

    def _channel_mix(self, l, lay, x, st):
        u = layer_norm(x, lay["ln2_w"], lay["ln2_b"])
        p = st["p_ffn"][l].copy()
        st["p_ffn"][l] = u
        if self.version == "6":
            xk = u + (p - u) * lay["fmaa_k"]
            xr = u + (p - u) * lay["fmaa_r"]
        else:
            xk = self._mix(u, p, lay["fmix_k"])
            xr = self._mix(u, p, lay["fmix_r"])
        r = sigmoid(lay["fWr"] @ xr)
        if self.mutation == "ffn_no_receptance":
            r = 1.0
        return x + r * (lay["fWv"] @ (np.maximum(lay["fWk"] @ xk, 0.0) ** 2))

    def step(self, state, token):
        if not 0 <= token < self.n_vocab:
            raise ValueError("token %d outside [0, %d)" % (token, self.n_vocab))
        x = (self.emb_raw if self.mutation == "ln0_skipped" else self.emb)[token].copy()
        for l, lay in enumerate(self.layers):
            x = self._time_mix(l, lay, x, state)
            x = self._channel_mix(l, lay, x, state)
        return self.head @ layer_norm(x, self.ln_out_w, self.ln_out_b)

    def run(self, tokens, state=None):
        st = self.new_state() if state is None else state
        return np.stack([self.step(st, t) for t in tokens]) if tokens else np.zeros((0, self.n_vocab))


def parse_tokens(s):
    return [int(t) for t in s.split(",") if t.strip() != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 RWKV-4/5/6 reference: logits after each token")
    ap.add_argument("--model", required=True, help="RWKV-4/5/6 .pth checkpoint")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", help="output file: T x V little-endian float32")
    ap.add_argument("--expect", help="compare with this T x V float32 file and print max |diff|")
    ap.add_argument("--mutation", choices=sorted(MUTATIONS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    model = Model(args.model, mutation=args.mutation)
    logits = model.run(parse_tokens(args.tokens))
    if args.out:
        logits.astype("<f4").tofile(args.out)
    if args.expect:
        exp = np.fromfile(args.expect, dtype="<f4").astype(np.float64).reshape(-1, model.n_vocab)
        n = min(len(exp), len(logits))
        d = float(np.abs(exp[:n] - logits[len(logits) - n:] if len(exp) < len(logits) else exp[:n] - logits[:n]).max())
        print("version %s: max |diff| %.3g over %d rows" % (model.version, d, n))
        return 0 if d <= 1e-4 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
