"""torch_layers.py — PyTorch's side of bench/layers: one layer's forward, or a
training step of x * s -> layer -> mean squared error -> SGD, on one thread,
in PyTorch's native layouts (NCHW, NCL). Usage:

  torch_layers.py predict|train KIND BATCH SECONDS ARGS...
    KIND dw:    H W C K STRIDE          depthwise 3x3-style, 'same' padding
    KIND conv1d: L CIN COUT K           'same' padding, stride 1
    KIND convt: H W CIN COUT K STRIDE   transposed, 'same' (output H*STRIDE)
    KIND dil:   H W CIN COUT K DIL      dilated, 'same'
    KIND lstm:  T F UNITS               nn.LSTM, every step's output, batch first
    KIND gru:   T F UNITS               nn.GRU (Keras' reset_after=True cell)
    KIND lstm_clf, gru_clf: T F UNITS   samples/fmnist_lstm.kdsl's classifier: the layer's
                                        last output, Linear(UNITS, 10); its training step
                                        is cross-entropy from the logits and Adam (1e-3)

Prints "layer_us mode=M batch=B median=U min=V" as bench/layer_time.c does,
in µs of the process's CPU time.
Kept with the bench; never part of the test suite or CI.
"""
import statistics, sys, time

import torch

torch.set_num_threads(1)
RUNS = 9


def build(kind, a):
    if kind == "dw":
        h, w, c, k, s = a
        m = torch.nn.Conv2d(c, c, k, stride=s, padding=k // 2, groups=c, bias=False)
        return m, (h, w, c), (c, 1, 1)
    if kind == "conv1d":
        l, ci, co, k = a
        return torch.nn.Conv1d(ci, co, k, padding=k // 2, bias=False), (l, ci), (ci, 1)
    if kind == "convt":
        h, w, ci, co, k, s = a
        m = torch.nn.ConvTranspose2d(ci, co, k, stride=s, padding=k // 2, output_padding=s - 1, bias=False)
        return m, (h, w, ci), (ci, 1, 1)
    if kind == "dil":
        h, w, ci, co, k, d = a
        return torch.nn.Conv2d(ci, co, k, padding=d * (k // 2), dilation=d, bias=False), (h, w, ci), (ci, 1, 1)
    if kind in ("lstm", "gru", "lstm_clf", "gru_clf"):
        t, f, u = a
        rnn = (torch.nn.LSTM if kind.startswith("lstm") else torch.nn.GRU)(f, u, batch_first=True)
        m = Last(rnn, torch.nn.Linear(u, 10)) if kind.endswith("_clf") else Seq(rnn)
        return m, ("seq", t, f), (f,)
    raise SystemExit("unknown kind " + kind)


class Seq(torch.nn.Module):
    """A recurrent layer's every-step output, as kdsl's return_sequences: true."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


class Last(torch.nn.Module):
    """A recurrent layer's last output into a Dense layer, as kdsl's LSTM(128) then Dense(10)."""

    def __init__(self, rnn, dense):
        super().__init__()
        self.rnn, self.dense = rnn, dense

    def forward(self, x):
        return self.dense(self.rnn(x)[0][:, -1])


def main():
    mode, kind, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    m, shape, sshape = build(kind, [int(v) for v in sys.argv[5:]])
    if shape[0] == "seq":   # [T, F] in kdsl and here (batch first)
        x = torch.rand(batch, shape[1], shape[2]) - 0.5
    elif len(shape) == 3:   # NHWC in kdsl; NCHW here
        x = torch.rand(batch, shape[2], shape[0], shape[1]) - 0.5
    else:                 # [L, C] in kdsl; NCL here
        x = torch.rand(batch, shape[1], shape[0]) - 0.5
    s = torch.nn.Parameter(torch.ones(sshape))
    with torch.no_grad():
        t = torch.rand_like(m(x))
    clf = kind.endswith("_clf")
    if clf:   # soft labels, as bench/layer_time.c's random ones
        t = torch.softmax(torch.rand(batch, 10), 1)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(list(m.parameters()) + [s], lr=1e-6)

    def step():
        if mode == "predict":
            with torch.no_grad():
                m(x)
            return
        opt.zero_grad(set_to_none=True)
        if clf:
            loss = torch.nn.functional.cross_entropy(m(x), t)
        else:
            loss = torch.nn.functional.mse_loss(m(x * s), t)
        loss.backward()
        opt.step()

    t0 = time.process_time()
    warm = 0
    while warm < 3 or time.process_time() - t0 < seconds / 10:
        step()
        warm += 1
    calls = max(3, int(seconds / RUNS / ((time.process_time() - t0) / warm)))
    us = []
    for _ in range(RUNS):
        t0 = time.process_time()
        for _ in range(calls):
            step()
        us.append((time.process_time() - t0) / calls * 1e6)
    print(f"layer_us mode={mode} batch={batch} median={statistics.median(us):.2f} min={min(us):.2f} calls={calls}")


if __name__ == "__main__":
    main()
