#!/usr/bin/env python3
"""Runs `rnn-wgpu export` models in onnxruntime and compares them with the crate's own forward
pass (`rnn-wgpu predict`): every cell (RNN with each activation, LSTM, GRU), 1 and 2 layers,
one and two directions, the last-step and every-step heads, MSE and cross-entropy (with its
probabilities output), with and without sequence_lens, opsets 14, 17 and 21. The models are trained for 2 steps at
T = 5 and batch 50; onnxruntime runs them at T = 13 and batch 4 (and at T = 1, batch 1), so
the graph's dynamic sizes are exercised. Passes when ||onnx - crate|| / ||crate|| <= 1e-5 on
every scored row.

    pip install onnxruntime numpy
    python3 scripts/onnx_check.py [--binary target/release/rnn-wgpu]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

TOLERANCE = 1e-5
# the exporter's oldest, default and newest opsets, taken in turn by the cases
OPSETS = (14, 17, 21)

# (cell, activation, layers, bidirectional, task): adding has a last-step head and MSE, copy
# an every-step head and cross-entropy.
CASES = [
    ("lstm", "tanh", 1, False, "adding"),
    ("lstm", "tanh", 2, True, "copy"),
    ("gru", "tanh", 2, True, "adding"),
    ("gru", "tanh", 1, False, "copy"),
    ("rnn", "tanh", 1, True, "adding"),
    ("rnn", "relu", 2, False, "copy"),
    ("rnn", "sigmoid", 1, False, "adding"),
]


def run(binary, *args):
    subprocess.run([binary, *args], check=True, stdout=subprocess.DEVNULL)


def check(binary, work, case, opset, with_lens, t, b, rng):
    cell, activation, layers, bidirectional, task = case
    model = work / f"{cell}-{activation}-{layers}-{bidirectional}-{task}.safetensors"
    if not model.exists():
        train = ["train", "--device", "cpu", "--task", task, "--seq-len", "5", "--hidden", "7",
                 "--cell", cell, "--activation", activation, "--layers", str(layers),
                 "--steps", "2", "--save", str(model)]
        if bidirectional:
            train.append("--bidirectional")
        run(binary, *train)
    onnx = model.with_suffix(f".{with_lens}.onnx")
    run(binary, "export", "--model", str(model), "--onnx", str(onnx), "--opset", str(opset),
        *(["--sequence-lens"] if with_lens else []))
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    features = inputs["x"].shape[2]
    x = rng.standard_normal((t, b, features)).astype(np.float32)
    feed = {"x": x}
    lengths = None
    predict = ["predict", "--model", str(model), "--input", str(work / "x.npy"),
               "--out", str(work / "y.npy")]
    if with_lens:
        lengths = rng.integers(1, t + 1, size=b).astype(np.int32)
        feed["sequence_lens"] = lengths
        np.save(work / "lengths.npy", lengths)
        predict += ["--lengths", str(work / "lengths.npy")]
    np.save(work / "x.npy", x)
    run(binary, *predict)
    expected = np.load(work / "y.npy")
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    got = outputs["y"]
    if got.shape != expected.shape:
        return f"shape {got.shape}, the crate's {expected.shape}"
    scored = np.ones(len(expected), dtype=bool)
    if lengths is not None and len(expected) == t * b:
        steps = np.repeat(np.arange(t), b)
        scored = steps < np.tile(lengths, t)
    error = np.linalg.norm(got[scored] - expected[scored]) / np.linalg.norm(expected[scored])
    if not error <= TOLERANCE:
        return f"||onnx - crate|| / ||crate|| = {error:.2e}"
    if "probabilities" in outputs:
        e = np.exp(expected - expected.max(axis=1, keepdims=True))
        softmax = e / e.sum(axis=1, keepdims=True)
        p_error = np.abs(outputs["probabilities"][scored] - softmax[scored]).max()
        if not p_error <= TOLERANCE:
            return f"probabilities differ from softmax(y) by {p_error:.2e}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/rnn-wgpu")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for k, case in enumerate(CASES):
            opset = OPSETS[k % len(OPSETS)]
            for with_lens in (False, True):
                for t, b in ((13, 4), (1, 1)):
                    problem = check(args.binary, work, case, opset, with_lens, t, b, rng)
                    label = f"{case} opset {opset} sequence_lens={with_lens} T={t} B={b}"
                    print(f"{'FAIL' if problem else 'ok  '} {label}{': ' + problem if problem else ''}")
                    failures += problem is not None
    checked = len(CASES) * 4
    print(f"{checked - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
