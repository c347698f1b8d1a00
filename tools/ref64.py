#!/usr/bin/env python3
"""Float64 reference of the RWKV-7 (x070) one-token step, written from rwkv-model-spec.md §2.

What it is: the oracle the golden fixtures come from; plain numpy, one token at a time, no
batching and no cleverness, so it can be read against the spec equation by equation.
What it is not: fast, or a copy of any upstream implementation. Invariant: with
mutation=None every formula is the spec's; a mutation (used only by make-golden.py's
sensitivity check) changes exactly one named detail.

CLI: ref64.py --model M.pth --tokens 1,2,3 --out OUT.f32
     writes T x V little-endian float32 logits, row t = logits after token t (zero state).
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
L2_EPS = 1e-12
DECAY_SCALE = 0.606531  # the one-token paths' literal for e^-1/2 (spec §2.4)

# Deliberate bugs for the sensitivity check of make-golden.py (name -> what changes).
MUTATIONS = {
    "swap_xr_xk": "r uses the x_k mix and k the x_r mix",
    "state_T_readout": "read-out y_i = sum_j S[j][i] r_j (transposed state index)",
    "state_T_update": "update reads the old state transposed, S[j][i]",
    "no_bonus": "bonus term r.(k~*r_k)*v dropped",
    "no_value_residual": "layers >= 1 skip v += (v_first - v)*sigmoid(...)",
    "gn_eps_1e-5": "GroupNorm eps 1e-5 instead of 64e-5",
    "decay_e1": "decay exp(-sigmoid(z)) instead of exp(-e^-1/2 sigmoid(z))",
    "mix_v4": "token shift in the v4 convention u*mu + p*(1-mu)",
    "kk_after_adjust": "removal key normalised from k~ (after the a-adjustment)",
    "g_sigmoid_out": "output gate sigmoid(sigmoid(x_g g1) g2)",
}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def layer_norm(x, w, b, eps=LN_EPS):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class State:
    """Per layer: p_att [C], S [H][N][N] (row = value index, column = key index), p_ffn [C]."""

    def __init__(self, n_layer, n_embd, n_head, head_size):
        self.p_att = np.zeros((n_layer, n_embd))
        self.S = np.zeros((n_layer, n_head, head_size, head_size))
        self.p_ffn = np.zeros((n_layer, n_embd))

    def copy(self):
        s = State.__new__(State)
        s.p_att, s.S, s.p_ffn = self.p_att.copy(), self.S.copy(), self.p_ffn.copy()
        return s


class Model:
    """An x070 checkpoint in float64. step() follows spec §2.2-2.7 literally."""

    def __init__(self, path, mutation=None):
        if mutation is not None and mutation not in MUTATIONS:
            raise ValueError("unknown mutation %r" % (mutation,))
        self.mutation = mutation
        t = rwkv_pth.read_pth(path)
        if "blocks.0.att.r_k" not in t or "blocks.0.att.k_k" not in t:
            raise ValueError("%s: not an RWKV-7 x070 checkpoint" % (path,))
        self.n_vocab, self.n_embd = t["emb.weight"].shape
        self.n_head, self.head_size = t["blocks.0.att.r_k"].shape
        if self.n_head * self.head_size != self.n_embd:
            raise ValueError("%s: r_k %s does not match n_embd %d"
                             % (path, t["blocks.0.att.r_k"].shape, self.n_embd))
        self.n_layer = 1 + max(int(m.group(1)) for k in t for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
        # ln0 folded into the embedding (spec §1.3 step 4)
        self.emb = layer_norm(t["emb.weight"], t["blocks.0.ln0.weight"], t["blocks.0.ln0.bias"])
        self.ln_out_w, self.ln_out_b = t["ln_out.weight"], t["ln_out.bias"]
        self.head = t["head.weight"]  # (V, C) [out][in]
        self.layers = []
        for l in range(self.n_layer):
            p = "blocks.%d." % l

            def g(name, flat=False):
                a = t[p + name]
                return a.reshape(-1) if flat else a

            lay = {
                "ln1_w": g("ln1.weight"), "ln1_b": g("ln1.bias"),
                "ln2_w": g("ln2.weight"), "ln2_b": g("ln2.bias"),
                "w0": g("att.w0", True), "w1": g("att.w1"), "w2": g("att.w2"),
                "a0": g("att.a0", True), "a1": g("att.a1"), "a2": g("att.a2"),
                "g1": g("att.g1"), "g2": g("att.g2"),
                "k_k": g("att.k_k", True), "k_a": g("att.k_a", True),
                "r_k": g("att.r_k").reshape(self.n_head, self.head_size),
                "Wr": g("att.receptance.weight"), "Wk": g("att.key.weight"),
                "Wv": g("att.value.weight"), "Wo": g("att.output.weight"),
                "lnx_w": g("att.ln_x.weight"), "lnx_b": g("att.ln_x.bias"),
                "ffn_xk": g("ffn.x_k", True), "ffn_K": g("ffn.key.weight"),
                "ffn_V": g("ffn.value.weight"),
            }
            for q in "rwkvag":
                lay["x_" + q] = g("att.x_" + q, True)
            if l > 0:  # layer 0 never uses v0/v1/v2, present or not (spec §1.1)
                lay["v0"], lay["v1"], lay["v2"] = g("att.v0", True), g("att.v1"), g("att.v2")
            self.layers.append(lay)

    def new_state(self):
        return State(self.n_layer, self.n_embd, self.n_head, self.head_size)

    def _time_mix(self, l, lay, x, st, v_first):
        H, N = self.n_head, self.head_size
        mut = self.mutation
        u = layer_norm(x, lay["ln1_w"], lay["ln1_b"])
        delta = st.p_att[l] - u
        st.p_att[l] = u
        if mut == "mix_v4":
            xq = {q: u * lay["x_" + q] + (u + delta) * (1.0 - lay["x_" + q]) for q in "rwkvag"}
        else:
            xq = {q: u + delta * lay["x_" + q] for q in "rwkvag"}
        if mut == "swap_xr_xk":
            xq["r"], xq["k"] = xq["k"], xq["r"]
        r = lay["Wr"] @ xq["r"]
        k = lay["Wk"] @ xq["k"]
        v = lay["Wv"] @ xq["v"]
        z = lay["w0"] + np.tanh(xq["w"] @ lay["w1"]) @ lay["w2"]
        a = sigmoid(lay["a0"] + (xq["a"] @ lay["a1"]) @ lay["a2"])
        gate = sigmoid(xq["g"] @ lay["g1"]) @ lay["g2"]
        if mut == "g_sigmoid_out":
            gate = sigmoid(gate)
        k_adj = k * (1.0 + (a - 1.0) * lay["k_a"])
        kappa = ((k_adj if mut == "kk_after_adjust" else k) * lay["k_k"]).reshape(H, N)
        kappa = kappa / np.maximum(np.sqrt((kappa * kappa).sum(axis=1, keepdims=True)), L2_EPS)
        if l == 0:
            v_first = v
        elif mut != "no_value_residual":
            v = v + (v_first - v) * sigmoid(lay["v0"] + (xq["v"] @ lay["v1"]) @ lay["v2"])
        w = np.exp(-(1.0 if mut == "decay_e1" else DECAY_SCALE) * sigmoid(z))

        rh, wh, kh, vh, ah = (t.reshape(H, N) for t in (r, w, k_adj, v, a))
        S = st.S[l]
        if mut == "state_T_update":
            S = S.transpose(0, 2, 1)
        s = np.einsum("hij,hj->hi", S, -kappa)  # old state
        S = (S * wh[:, None, :] + s[:, :, None] * (kappa * ah)[:, None, :]
             + vh[:, :, None] * kh[:, None, :])
        st.S[l] = S
        if mut == "state_T_readout":
            y = np.einsum("hji,hj->hi", S, rh)
        else:
            y = np.einsum("hij,hj->hi", S, rh)  # new state

        mu = y.mean(axis=1, keepdims=True)
        var = ((y - mu) ** 2).mean(axis=1, keepdims=True)
        gn_eps = 1e-5 if mut == "gn_eps_1e-5" else GN_EPS
        yn = ((y - mu) / np.sqrt(var + gn_eps)).reshape(-1) * lay["lnx_w"] + lay["lnx_b"]
        if mut != "no_bonus":
            beta = (rh * kh * lay["r_k"]).sum(axis=1)  # (H,)
            yn = yn + (beta[:, None] * vh).reshape(-1)
        return x + lay["Wo"] @ (yn * gate), v_first

    def _channel_mix(self, l, lay, x, st):
        u = layer_norm(x, lay["ln2_w"], lay["ln2_b"])
        delta = st.p_ffn[l] - u
        st.p_ffn[l] = u
        if self.mutation == "mix_v4":
            xk = u * lay["ffn_xk"] + (u + delta) * (1.0 - lay["ffn_xk"])
        else:
            xk = u + delta * lay["ffn_xk"]
        h = np.maximum(lay["ffn_K"] @ xk, 0.0) ** 2
        return x + lay["ffn_V"] @ h

    def step(self, state, token):
        """Advance `state` (modified in place) by one token; returns float64 logits [V]."""
        if not 0 <= token < self.n_vocab:
            raise ValueError("token %d outside [0, %d)" % (token, self.n_vocab))
        x = self.emb[token].copy()
        v_first = None
        for l, lay in enumerate(self.layers):
            x, v_first = self._time_mix(l, lay, x, state, v_first)
            x = self._channel_mix(l, lay, x, state)
        return self.head @ layer_norm(x, self.ln_out_w, self.ln_out_b)

    def run(self, tokens, state=None):
        """Logits after each token from `state` (zero state if None) -> float64 [T][V]."""
        st = self.new_state() if state is None else state
        return np.stack([self.step(st, t) for t in tokens]) if tokens else np.zeros((0, self.n_vocab))


def parse_tokens(s):
    return [int(t) for t in s.split(",") if t.strip() != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 RWKV-7 reference: logits after each token")
    ap.add_argument("--model", required=True, help="x070 .pth checkpoint")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help="output file: T x V little-endian float32")
    ap.add_argument("--mutation", choices=sorted(MUTATIONS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    model = Model(args.model, mutation=args.mutation)
    logits = model.run(parse_tokens(args.tokens))
    logits.astype("<f4").tofile(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
