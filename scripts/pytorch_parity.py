#!/usr/bin/env python3
"""Stacked bidirectional models against PyTorch: outputs, loss and every parameter gradient.

    cargo run --release --example export_parity -- DIR
    python scripts/pytorch_parity.py DIR

For each NAME.safetensors that `examples/export_parity.rs` wrote (2-layer bidirectional RNN,
LSTM and GRU; Readout::Last with MSE, Readout::All with cross-entropy; equal and ragged
lengths), this loads the recurrent tensors unchanged into `torch.nn.RNN/LSTM/GRU(...,
num_layers=2, bidirectional=True)` with `load_state_dict(strict=True)`, runs the inputs as a
packed sequence in float64, applies the head as rnn-wgpu defines it

    Readout::Last: torch.cat((h_n[-2], h_n[-1]), 1) @ W^T + b    (each sequence's final states)
    Readout::All:  output @ W^T + b                               (every valid step)

and asserts that the outputs (valid rows), the loss and every gradient match the CPU
reference's to 1e-5 relative to each tensor's largest magnitude. Needs torch, numpy and
safetensors; not part of CI.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

TOLERANCE = 1e-5
MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def metadata(path):
    """The safetensors header's __metadata__ (the rnn-wgpu configuration)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))["__metadata__"]


def relative_error(got, expected):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(np.abs(expected).max(), 1e-30)
    return np.abs(got - expected).max() / scale


def check(path):
    """Compares one exported case; returns the worst relative error."""
    name = path.name.removesuffix(".safetensors")
    meta = metadata(path)
    cell, readout, loss_kind = meta["cell"], meta["readout"], meta["loss"]
    layers, bidirectional = int(meta["layers"]), meta["bidirectional"] == "true"
    hidden, inputs = int(meta["hidden_size"]), int(meta["input_size"])
    state = load_file(str(path))
    npy = lambda what: np.load(path.parent / f"{name}.{what}.npy")  # noqa: E731
    x = torch.from_numpy(npy("x")).double()  # [T, B, I]
    lengths = torch.from_numpy(npy("lengths"))
    targets = torch.from_numpy(npy("targets"))
    expected_outputs = npy("outputs")
    seq_len, batch = x.shape[0], x.shape[1]

    rnn = MODULES[cell](
        inputs, hidden, num_layers=layers, bidirectional=bidirectional
    ).double()
    recurrent = {
        k: v
        for k, v in state.items()
        if not k.startswith(("head.", "grad.", "optim.", "grad_norm.")) and k != "loss"
    }
    rnn.load_state_dict(recurrent, strict=True)  # the names and shapes as saved
    head_weight = state["head.weight"].double().requires_grad_()
    head_bias = state["head.bias"].double().requires_grad_()

    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, h_n = rnn(packed)
    if cell == "lstm":
        h_n = h_n[0]
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, total_length=seq_len)
    if readout == "last":
        features = torch.cat((h_n[-2], h_n[-1]), 1)  # [B, 2H]
        valid = torch.ones(batch, dtype=torch.bool)
    else:
        features = output.reshape(seq_len * batch, -1)  # time-major rows t * B + b
        steps = torch.arange(seq_len).unsqueeze(1)
        valid = (steps < lengths.unsqueeze(0)).reshape(-1)
    outputs = features @ head_weight.T + head_bias
    scored = outputs[valid]
    if loss_kind == "mse":
        loss = torch.nn.functional.mse_loss(scored, targets[valid].double())
    else:
        loss = torch.nn.functional.cross_entropy(scored, targets[valid].long())
    loss.backward()

    errors = {
        "outputs": relative_error(
            outputs[valid].detach().numpy(), expected_outputs[valid.numpy()]
        ),
        "loss": relative_error(loss.item(), state["loss"].double().item()),
    }
    gradients = dict(rnn.named_parameters())
    gradients["head.weight"], gradients["head.bias"] = head_weight, head_bias
    assert sorted(f"grad.{k}" for k in gradients) == sorted(
        k for k in state if k.startswith("grad.")
    ), f"{name}: the exported gradients name other tensors"
    for parameter, tensor in gradients.items():
        errors[f"d {parameter}"] = relative_error(
            tensor.grad.numpy(), state[f"grad.{parameter}"].double().numpy()
        )
    worst = max(errors, key=errors.get)
    status = "ok" if errors[worst] <= TOLERANCE else "FAILED"
    print(
        f"{name:18} {status}: outputs {errors['outputs']:.1e}, loss {errors['loss']:.1e}, "
        f"worst {worst} {errors[worst]:.1e} ({len(errors) - 2} gradients)"
    )
    return errors[worst]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    paths = sorted(Path(sys.argv[1]).glob("*.safetensors"))
    if not paths:
        sys.exit(f"no .safetensors files in {sys.argv[1]}: run examples/export_parity first")
    worst = max(check(path) for path in paths)
    if worst > TOLERANCE:
        sys.exit(f"parity FAILED: worst relative error {worst:.1e} > {TOLERANCE:.0e}")
    print(f"all {len(paths)} cases match PyTorch (worst relative error {worst:.1e})")


if __name__ == "__main__":
    main()
