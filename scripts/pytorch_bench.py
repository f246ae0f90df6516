#!/usr/bin/env python3
"""PyTorch's side of `rnn-wgpu bench`: one training step of the same model.

    python scripts/pytorch_bench.py [--threads 2] [--runs 5] [--warmup 2] [--shape B,T,I,H]
        [--layers L] [--bidirectional] [--device cpu|cuda] [--tf32 default|off]

On CUDA the LSTM runs on cuDNN; `--tf32 off` turns TF32 off in cuDNN and matmul (strict
FP32), `default` leaves PyTorch's defaults (TF32 allowed in cuDNN, not in matmul). Each
timed step ends with a device synchronisation.

The model is the benchmark's: torch.nn.LSTM(I, H) (f32, PyTorch's initialisation), a linear
head on the last step, MSE against random targets, plain SGD; one step is forward, backward
and the update, timed with time.perf_counter. Prints the median ms and GFLOP/s per shape from
the same FLOP formula as `rnn-wgpu bench`: 3 * 2 * T * B * (W + H) * 4 * H per cell (W = I for
layer 0, D*H above). Not part of CI.
"""

import argparse
import statistics
import time

import torch

SUITE = [(32, 100, 2, 128), (128, 256, 64, 256), (64, 1000, 2, 128), (256, 128, 128, 512)]


def step_flops(shape, layers, directions):
    batch, seq_len, inputs, hidden = shape
    return sum(
        directions * 6 * seq_len * batch * ((inputs if k == 0 else directions * hidden) + hidden)
        * 4 * hidden
        for k in range(layers)
    )


def step_time(shape, runs, warmup, layers, bidirectional, device):
    batch, seq_len, inputs, hidden = shape
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(inputs, hidden, num_layers=layers, bidirectional=bidirectional)
    directions = 2 if bidirectional else 1
    head = torch.nn.Linear(directions * hidden, 1)
    lstm.to(device)
    head.to(device)
    params = list(lstm.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=1e-3)
    x = (torch.rand(seq_len, batch, inputs) * 2 - 1).to(device)
    y = (torch.rand(batch, 1) * 2 - 1).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for k in range(warmup + runs):
        start = time.perf_counter()
        optimizer.zero_grad()
        _, (h_n, _) = lstm(x)
        # the last layer's final states, forward then reverse (rnn-wgpu's Readout::Last)
        last = torch.cat(list(h_n[-directions:]), dim=1)
        loss = torch.nn.functional.mse_loss(head(last), y)
        loss.backward()
        optimizer.step()
        sync()
        elapsed = time.perf_counter() - start
        if k >= warmup:
            times.append(elapsed)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--shape", help="B,T,I,H (default: the suite)")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tf32", choices=["default", "off"], default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tf32 == "off":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    shapes = [tuple(int(v) for v in args.shape.split(","))] if args.shape else SUITE
    where = f"{torch.get_num_threads()} threads"
    if args.device == "cuda":
        where = (f"{torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}, "
                 f"TF32 {args.tf32} (cudnn {torch.backends.cudnn.allow_tf32}, "
                 f"matmul {torch.backends.cuda.matmul.allow_tf32})")
    print(f"torch {torch.__version__}, {where}, median of {args.runs} after {args.warmup} warm-up")
    for shape in shapes:
        directions = 2 if args.bidirectional else 1
        flops = step_flops(shape, args.layers, directions)
        median = step_time(shape, args.runs, args.warmup, args.layers, args.bidirectional,
                           args.device)
        print(f"{shape}: {median * 1e3:10.1f} ms  {flops / median / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
