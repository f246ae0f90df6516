#!/usr/bin/env python3
"""PyTorch's side of `rnn-wgpu bench`: one training step of the same model on the CPU.

    python scripts/pytorch_bench.py [--threads 2] [--runs 5] [--warmup 2] [--shape B,T,I,H]
        [--layers L] [--bidirectional]

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


def step_time(shape, runs, warmup, layers, bidirectional):
    batch, seq_len, inputs, hidden = shape
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(inputs, hidden, num_layers=layers, bidirectional=bidirectional)
    directions = 2 if bidirectional else 1
    head = torch.nn.Linear(directions * hidden, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=1e-3)
    x = torch.rand(seq_len, batch, inputs) * 2 - 1
    y = torch.rand(batch, 1) * 2 - 1
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [tuple(int(v) for v in args.shape.split(","))] if args.shape else SUITE
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.runs} after {args.warmup} warm-up")
    for shape in shapes:
        directions = 2 if args.bidirectional else 1
        flops = step_flops(shape, args.layers, directions)
        median = step_time(shape, args.runs, args.warmup, args.layers, args.bidirectional)
        print(f"{shape}: {median * 1e3:10.1f} ms  {flops / median / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
