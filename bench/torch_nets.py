#!/usr/bin/python3
"""PyTorch's side of bench/run's inference and ResNet-8 training cases, and
the ONNX files ONNX Runtime runs (issue 28).

The networks are kdsl's samples layer for layer (NCHW here, NHWC in kdsl;
the same shapes, parameters and FLOPs):
  mlp       samples/fmnist_mlp.kdsl: 784-256-128-10, ReLU
  cnn       samples/fmnist_cnn.kdsl: conv3x3(32) pool conv3x3(64) pool dense(128) dense(10)
  resnet8   samples/resnet8.kdsl: MLPerf Tiny's CIFAR-10 ResNet-8 (kdslc import of
            pretrainedResnet.h5): conv3x3(16) BN ReLU, three residual stacks of
            16/32/64 filters (the last two stride 2 with a 1x1 stride-2
            projection), AveragePooling2D(8), dense(10) softmax
  resnet50  samples/resnet50.kdsl (resnet50_head): keras.applications' ResNet50,
            whose bottleneck blocks stride in their first 1x1 convolution
            (torchvision's v1.5 strides in the 3x3), every convolution with a
            bias, then global average pooling and dense(100)
Keras' "same" padding of a stride-2 3x3 convolution pads 0 before and 1
after, PyTorch's padding=1 one on each side: the same output shape and work.
The weights are random (timing only).

  torch_nets.py export NET BATCH FILE.onnx   the network at that batch as ONNX (opset 13);
                                             prints its input's shape, "RESULT export NET dims=B,C,H,W"
  torch_nets.py null FILE.onnx               a 1-element Add: ORT's per-call overhead
  torch_nets.py infer NET BATCH              model(x) under no_grad, one thread: median us
  torch_nets.py train NET BATCH              one Adam step (lr 1e-3) on random data: median us

Timing (infer, train) is bench/run's one protocol, the same as bench/lat.c
and bench/ort_time.js: calls for 0.2 s (at least 2) to warm up, then calls
for about 1 s (at least 11, at most 1000), each timed alone; prints
"RESULT ... median=Uus min=Vus n=N". Run it with OMP_NUM_THREADS=1 and
OPENBLAS_NUM_THREADS=1 (bench/run does): Debian's torch runs its GEMMs in
OpenBLAS's own pool, which torch.set_num_threads() does not bound.
"""
import sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

WARM_S, TIME_S, MIN_CALLS, MAX_CALLS = 0.2, 1.0, 11, 1000


class ResBlock(nn.Module):
    """A residual block of ResNet-8: two 3x3 convolutions, the shortcut the
    identity or, where the block strides, a 1x1 convolution of that stride."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.b1 = nn.BatchNorm2d(cout, eps=1e-3)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.b2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.short = nn.Conv2d(cin, cout, 1, stride) if stride != 1 else None

    def forward(self, x):
        h = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu((self.short(x) if self.short is not None else x) + h)


class Bottleneck(nn.Module):
    """keras.applications.ResNet50's conv_block (projection, stride in the
    first 1x1) and identity_block."""

    def __init__(self, cin, filters, stride, project):
        super().__init__()
        eps = 1.001e-5
        self.c1, self.b1 = nn.Conv2d(cin, filters, 1, stride), nn.BatchNorm2d(filters, eps=eps)
        self.c2, self.b2 = nn.Conv2d(filters, filters, 3, 1, 1), nn.BatchNorm2d(filters, eps=eps)
        self.c3, self.b3 = nn.Conv2d(filters, 4 * filters, 1), nn.BatchNorm2d(4 * filters, eps=eps)
        self.short = nn.Sequential(nn.Conv2d(cin, 4 * filters, 1, stride), nn.BatchNorm2d(4 * filters, eps=eps)) \
            if project else None

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(self.b2(self.c2(h)))
        h = self.b3(self.c3(h))
        return F.relu((self.short(x) if self.short is not None else x) + h)


def resnet50():
    layers = [nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64, eps=1.001e-5), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]  # after the ReLU, padding with -inf and with 0 agree
    cin = 64
    for filters, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, filters, stride if i == 0 else 1, i == 0))
            cin = 4 * filters
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 100))


def make(net):
    """(the network, the shape of one input sample)"""
    if net == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)), (784,)
    if net == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 28, 28)
    if net == "resnet8":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16, eps=1e-3), nn.ReLU(),
            ResBlock(16, 16, 1), ResBlock(16, 32, 2), ResBlock(32, 64, 2),
            nn.AvgPool2d(8), nn.Flatten(), nn.Linear(64, 10), nn.Softmax(1)), (3, 32, 32)
    if net == "resnet50":
        return resnet50(), (3, 224, 224)
    sys.exit(f"torch_nets.py: unknown network {net!r} (mlp, cnn, resnet8, resnet50)")


def optimizer_groups(net, model):
    """Adam's parameter groups: ResNet-8's convolution kernels carry Keras'
    l2(1e-4) (a gradient of 2e-4 w), as in samples/resnet8.kdsl."""
    if net != "resnet8":
        return model.parameters()
    kernels = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    rest = [p for p in model.parameters() if all(p is not k for k in kernels)]
    return [{"params": kernels, "weight_decay": 2e-4}, {"params": rest}]


def timed(call):
    """bench/run's protocol: warm up for WARM_S, then time single calls for
    about TIME_S; (median, min, count) in us. call(i): the i-th call."""
    t0 = time.perf_counter()
    n = 0
    while n < 2 or time.perf_counter() - t0 < WARM_S:
        call(n)
        n += 1
    ts = []
    t0 = time.perf_counter()
    while len(ts) < MAX_CALLS and (len(ts) < MIN_CALLS or time.perf_counter() - t0 < TIME_S):
        s = time.perf_counter_ns()
        call(n)
        n += 1
        ts.append(time.perf_counter_ns() - s)
    ts.sort()
    return ts[len(ts) // 2] / 1e3, ts[0] / 1e3, len(ts)


class Null(nn.Module):
    def forward(self, x):
        return x + 1


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "null" and len(sys.argv) == 3:
        torch.onnx.export(Null(), torch.zeros(1), sys.argv[2], opset_version=13, input_names=["x"], output_names=["y"])
        return
    if cmd not in ("export", "infer", "train") or len(sys.argv) != (5 if cmd == "export" else 4):
        sys.exit(__doc__)
    model, shape = make(sys.argv[2])
    batch = int(sys.argv[3])
    x = torch.rand(batch, *shape)
    if cmd == "export":
        model.eval()
        torch.onnx.export(model, x, sys.argv[4], opset_version=13, input_names=["x"], output_names=["y"])
        print(f"RESULT export {sys.argv[2]} dims={','.join(map(str, x.shape))}")
        return
    if cmd == "infer":
        model.eval()
        # the next of up to 16 input batches each call (16 MB in all), as
        # lat.c and ort_time.js do
        pool = max(1, min(16, (16 << 20) // (x.numel() * 4)))
        xs = [x] + [torch.rand(batch, *shape) for _ in range(pool - 1)]
        with torch.no_grad():
            med, best, n = timed(lambda i: model(xs[i % pool]))
    else:
        model.train()
        y = torch.randint(0, 10, (batch,))
        opt = torch.optim.Adam(optimizer_groups(sys.argv[2], model), lr=1e-3)
        # a network ending in a softmax (ResNet-8, as kdsl's) takes the loss
        # of its probabilities, the others of their logits
        probs = isinstance(model[-1], nn.Softmax)

        def step():
            opt.zero_grad(set_to_none=True)
            out = model(x)
            (F.nll_loss(torch.log(out), y) if probs else F.cross_entropy(out, y)).backward()
            opt.step()
        med, best, n = timed(lambda i: step())
    print(f"RESULT {cmd} {sys.argv[2]} batch={batch} median={med:.2f}us min={best:.2f}us n={n}")


if __name__ == "__main__":
    main()
