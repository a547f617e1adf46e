// ort_time.js — ONNX Runtime's side of bench/run's inference cases (issue 28).
//
//   node ort_time.js ORT_PACKAGE NULL.onnx MODEL.onnx D0,D1,...
//
// ORT_PACKAGE: the directory of the onnxruntime-node npm package (its CPU
// library is inside it). One session per model with one intra-op and one
// inter-op thread, sequential execution, every graph optimisation; the
// package's native binding is called directly (its run() is synchronous; the
// public API only wraps it in a promise and a setImmediate). Each model is
// timed by bench/run's one protocol (bench/lat.c, bench/torch_nets.py):
// calls for 0.2 s (at least 2) to warm up, then calls for about 1 s (at
// least 11, at most 1000), each timed alone, each on the next of up to 16
// different input batches (fewer where a batch is large: 16 MB in all), as
// lat.c and torch_nets.py do, so that no framework reads its input from a
// cache the others would miss. NULL.onnx, a 1-element Add, is
// timed the same way right before MODEL.onnx: run()'s own cost per call
// (the binding, tensor wrapping, ORT's session bookkeeping), which bench/run
// subtracts. Prints
//   RESULT ort null median=Uus min=Vus n=N
//   RESULT ort model median=Uus min=Vus n=N
"use strict";
const path = require("path");

const [pkg, nullPath, modelPath, dimsArg] = process.argv.slice(2);
if (!dimsArg) {
    console.error("usage: node ort_time.js ORT_PACKAGE NULL.onnx MODEL.onnx D0,D1,...");
    process.exit(2);
}
const ort = require(pkg);
const { binding, initOrt } = require(path.join(pkg, "dist", "binding"));
initOrt();

const OPTIONS = {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
};

function session(file) {
    const s = new binding.InferenceSession();
    s.loadModel(file, OPTIONS);
    return s;
}

// call(i): the i-th call of the run
function timed(call) {
    const now = () => Number(process.hrtime.bigint()) / 1e3;
    let t0 = now(), n = 0;
    while (n < 2 || now() - t0 < 0.2e6) call(n++);
    const ts = [];
    t0 = now();
    while (ts.length < 1000 && (ts.length < 11 || now() - t0 < 1e6)) {
        const s = now();
        call(n++);
        ts.push(now() - s);
    }
    ts.sort((a, b) => a - b);
    return { median: ts[ts.length >> 1], min: ts[0], n: ts.length };
}

function time(name, file, dims) {
    const s = session(file);
    const size = dims.reduce((a, b) => a * b, 1);
    const pool = Math.max(1, Math.min(16, Math.floor((16 << 20) / (size * 4))));
    const data = new Float32Array(size * pool);
    let seed = 12345;
    for (let i = 0; i < data.length; i++) data[i] = ((seed = Math.imul(seed, 1103515245) + 12345 >>> 0) >>> 8 & 255) / 255;
    const feeds = [];
    for (let i = 0; i < pool; i++)
        feeds.push({ [s.inputMetadata[0].name]: new ort.Tensor("float32", data.subarray(i * size, (i + 1) * size), dims) });
    const fetches = { [s.outputMetadata[0].name]: null };
    let sink = 0;
    const r = timed((i) => { sink += s.run(feeds[i % pool], fetches, {})[s.outputMetadata[0].name].data[0]; });
    console.log(`RESULT ort ${name} median=${r.median.toFixed(2)}us min=${r.min.toFixed(2)}us n=${r.n}`);
    if (!Number.isFinite(sink)) console.error("(checksum not finite)");
    s.dispose();
}

time("null", nullPath, [1]);
time("model", modelPath, dimsArg.split(",").map(Number));
