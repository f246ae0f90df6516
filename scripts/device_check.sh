#!/usr/bin/env bash
# One prepared run on a lent GPU machine (the library's `device` tool), most important first:
# whether wgpu sees the GPU through Vulkan, parity there (the fused step kernels included),
# f16 storage's parity and that of the products and time steps on cooperative matrices
# (RNN_WGPU_MATRIX_UNITS=on) before the suite at f16 with matrix units off, on, and on for the
# products only,
# NaN and infinity noticed as on the CPU,
# the bench suite with this build and an earlier one alternating, PyTorch's cuDNN
# LSTM on the same shapes (TF32 off and default), the fused step kernels in other workgroup
# shapes, then tuning (`rnn-wgpu tune`, then the suite
# with its cache and without), the GEMM kernels alone, and the persistent recurrence (a
# workgroup per slice of the batch) against the per-step path, from one slice to 128, at small
# H and at two suite shapes (W_hh read from memory). Everything it prints also lands in $OUT. Not part of CI.
#
# That machine has no Rust toolchain and no network: `bash scripts/device_kit.sh` prepares,
# here, the stripped binaries in .device (this tree's and, as .device/rnn-wgpu-before, the
# build of the commit BENCHMARKS.md's H200 table measured; left out of the comparison if
# absent) and the Vulkan loader in .gl; both folders are in .gitignore, so they travel only
# when carried. An earlier run of the first parts on an H200 took 69 s of the command and
# about 100 s of device time with the machine's start.
# Then call run(command="bash scripts/device_check.sh", carry=[".device", ".gl"],
# timeout_s=540) once. QUICK=1 runs one small shape of each part (for trying it here).
set -uo pipefail
OUT="${OUT:-/tmp/device_check}"
mkdir -p "$OUT"
BIN="${BIN:-.device/rnn-wgpu}"
BEFORE="${BEFORE:-.device/rnn-wgpu-before}"
log() { echo "== $*" | tee -a "$OUT/check.txt"; }
# Each command gets at most LIMIT seconds, so one hang cannot eat the lease.
run() { timeout "${LIMIT:-120}" "$@" 2>&1 | grep -v XDG_RUNTIME_DIR | tee -a "$OUT/check.txt"; }

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-$(id -u)}"
# Auto's rules everywhere but in the tuning part
export RNN_WGPU_TUNING=off
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# grep reads all of ldconfig's output (no -q), so pipefail cannot see a SIGPIPE there
if ! ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null && compgen -G ".gl/*.deb" >/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES="$icd"
fi

log "GPU and driver"
run nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
log "Vulkan: loader and ICD files"
run sh -c 'ldconfig -p | grep libvulkan; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1'
log "rnn-wgpu devices"
run "$BIN" devices

if [ -n "${QUICK:-}" ]; then
    suite=(--shape 8,20,2,16)
    small=("lstm 1,100,2,32")
    torch_shapes=(--shape 8,20,2,16)
    products=(64,64,64,nn)
    tiles=(4x4x8 4x4x4x2)
    f16_tile=4x4x8
else
    suite=()
    # the H200's 2026-11-27 table, then past Auto's 16 slices (8 rows each at LSTM H = 32, RNN
    # H = 64): 32, 128 and 32 slices; then W_hh read from memory at two suite shapes (32 and
    # 64 slices of one row)
    small=("lstm 1,100,2,32" "lstm 8,100,2,32" "lstm 64,100,2,32" "lstm 256,100,2,32"
        "rnn 64,100,2,64" "gru 64,100,2,32" "lstm 64,1000,2,16" "lstm 1024,100,2,32"
        "rnn 256,1000,2,64" "lstm 32,100,2,128" "lstm 64,1000,2,128")
    torch_shapes=()
    # A square first (the clocks ramp up), then (256, 128, 128, 512): the recurrent products
    # forward and back (inside the fused step kernels now; as GEMMs for comparison), dW_hh,
    # dW_ih, the input projection; (64, 1000, 2, 128): dW_hh
    products=(4096,4096,4096,nn 256,2048,512,nt 256,512,2048,nn 2048,512,32768,tn
        2048,128,32768,tn 32768,2048,128,nt 512,128,64000,tn)
    # against the rule's 4 layers of 8x8 splitting K (8x8x16x4 at every suite shape where the
    # workgroup memory is 48 KiB or more): K whole as the rule kept it before, split 2 ways,
    # 4 ways with shorter stages, and other layer shapes
    tiles=(8x8x64 8x8x32x2 8x8x8x4 16x4x8x4 4x16x16x4 16x16x16)
    # the rule's tile at every suite shape on a GPU with 48 KiB of workgroup memory (one
    # tile for every shape: the matrix units' steps off)
    f16_tile=8x8x16x4
fi

log "parity on this adapter (exits non-zero above 1e-4)"
for cell in lstm gru rnn; do
    run "$BIN" parity --cell "$cell" --batch 5 --seq-len 33 --input 7 --hidden 17
done
run "$BIN" parity --cell lstm --batch 16 --seq-len 100 --input 32 --hidden 257
# a batch of at most 8 rows takes the fused steps' 8-row tiles
run "$BIN" parity --cell gru --batch 3 --seq-len 50 --input 4 --hidden 300
# T * B = 12,800 rows: the weight gradients split K over parts, the bias gradients sum blocks
run "$BIN" parity --cell lstm --batch 64 --seq-len 200 --input 3 --hidden 33
# 160,000 rows whose head-gradient terms cancel (6e-4 off in one f32 chain); and T * B =
# 32,768 rows into 256 tiles of dW_hh, which the 64x64 tile sums in parts of 4,096
run "$BIN" parity --cell rnn --activation sigmoid --batch 64 --seq-len 2500 --input 1 \
    --hidden 8 --output 10 --readout all --loss ce --layers 3 --seed 6455
run "$BIN" parity --cell lstm --batch 256 --seq-len 128 --input 16 --hidden 512 --output 1

log "f16 storage and matrix units: the adapter's f16, subgroups and cooperative-matrix shapes, then"
log "f16 parity (exits non-zero above parity::F16_TOLERANCE) without and with matrix units, before any timing"
RNN_WGPU_MATRIX_UNITS=on run "$BIN" devices
for units in off on; do
    for cell in lstm gru rnn; do
        RNN_WGPU_MATRIX_UNITS=$units run "$BIN" parity --precision f16 --cell "$cell" --batch 5 \
            --seq-len 33 --input 7 --hidden 17
    done
    # products with M, N and K past one block of tiles (32x32 at 16x16 tiles), at odd sizes
    RNN_WGPU_MATRIX_UNITS=$units run "$BIN" parity --precision f16 --cell lstm --batch 67 \
        --seq-len 40 --input 33 --hidden 129
    # the weight gradients' K = T * B = 10,240 over a C of few blocks: split into parts of K
    RNN_WGPU_MATRIX_UNITS=$units run "$BIN" parity --precision f16 --cell lstm --batch 64 \
        --seq-len 160 --input 9 --hidden 33
done

log "bench suite at f16: matrix units off, then on (against the f32 suite below and cuDNN TF32),"
log "then on with the time steps on fused.wgsl's tiles (RNN_WGPU_STEP_TILE=$f16_tile)"
for units in off on; do
    RNN_WGPU_MATRIX_UNITS=$units run "$BIN" bench "${suite[@]}" --precision f16 --runs 10 \
        --warmup 3 --json
done
RNN_WGPU_MATRIX_UNITS=on RNN_WGPU_STEP_TILE=$f16_tile run "$BIN" bench "${suite[@]}" --precision f16 \
    --runs 10 --warmup 3 --json

log "non-finite values: a ReLU RNN that overflows stops at step 1, naming the same time step on both"
# (min, max and clamp may drop a NaN on NVIDIA; the kernels test the bits instead)
for device in gpu cpu; do
    run "$BIN" train --device "$device" --task adding --seq-len 40 --cell rnn --activation relu \
        --hh-scale 1e6 --hidden 17 --batch 3 --steps 3
done

log "the same seed twice: bit-identical parameters"
for i in 1 2; do
    run "$BIN" train --task adding --seq-len 200 --batch 64 --hidden 48 --steps 20 \
        --eval-every 10 --seed 7 --save "/tmp/determinism$i.safetensors"
done
run python3 -c "
import sys
from safetensors.numpy import load_file as load
a, b = load(sys.argv[1]), load(sys.argv[2])
same = a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
print(len(a), 'tensors', 'bit-identical' if same else 'DIFFER')
" /tmp/determinism1.safetensors /tmp/determinism2.safetensors

log "bench suite: LSTM, forward + BPTT + SGD; this build ($(cat "$BIN.commit" 2>/dev/null)) and"
log "the earlier one ($(cat "$BEFORE.commit" 2>/dev/null)), alternating"
for round in 1 2; do
    for bin in "$BIN" "$BEFORE"; do
        [ -x "$bin" ] || continue
        log "$bin, round $round"
        run "$bin" bench "${suite[@]}" --runs 10 --warmup 3 --json
    done
done

log "PyTorch LSTM on CUDA (cuDNN), TF32 off, then PyTorch's default"
for tf32 in off default; do
    run python3 scripts/pytorch_bench.py --device cuda --tf32 "$tf32" --runs 10 --warmup 3 \
        "${torch_shapes[@]}"
done

log "fused step kernels: the suite in other workgroup shapes (RNN_WGPU_STEP_TILE=UNITSxROWSxSLICE[xSPLIT])"
for tile in "${tiles[@]}"; do
    RNN_WGPU_STEP_TILE=$tile run "$BIN" parity --cell lstm --batch 64 --seq-len 16 --input 16 \
        --hidden 257 --output 1
    RNN_WGPU_STEP_TILE=$tile run "$BIN" bench "${suite[@]}" --runs 5 --warmup 2 --json
done

log "tuning: each product's kernels timed, then the suite with the cache and without"
# tune times every product's kernels, the steps' K whole and split (each split first checked
# against the CPU reference) and, at f16, both step kernels: more than one command's default
LIMIT=300 RNN_WGPU_TUNING=/tmp/tuning.json run "$BIN" tune "${suite[@]}" --rounds 3
cp /tmp/tuning.json "$OUT/" 2>/dev/null
for tuning in /tmp/tuning.json off /tmp/tuning.json off; do
    RNN_WGPU_TUNING=$tuning run "$BIN" bench "${suite[@]}" --runs 10 --warmup 3 --json
done
log "tuning at f16 with the matrix units on: each f16 product's tiles against gemm_coop"
LIMIT=300 RNN_WGPU_MATRIX_UNITS=on RNN_WGPU_TUNING=/tmp/tuning-f16.json run "$BIN" tune \
    "${suite[@]}" --precision f16 --rounds 3
cp /tmp/tuning-f16.json "$OUT/" 2>/dev/null
for tuning in /tmp/tuning-f16.json off; do
    RNN_WGPU_MATRIX_UNITS=on RNN_WGPU_TUNING=$tuning run "$BIN" bench "${suite[@]}" \
        --precision f16 --runs 10 --warmup 3 --json
done
log "GEMM alone: the GPU kernels side by side on the largest shape's products"
if [ -x .device/gemm_speed ]; then
    args=()
    for product in "${products[@]}"; do
        args+=(--product "$product")
    done
    # every named tile, and other shapes of the same source (gemm.wgsl's override constants)
    run .device/gemm_speed 3 --gpu --tile 4:16x16:32:1 --tile 8:16x8:16:1 --tile 8:8x16:16:1 \
        --tile 8:16x16:16:1 "${args[@]}"
fi
log "persistent recurrence against per-step dispatches"
for spec in "${small[@]}"; do
    set -- $spec
    for recurrence in steps persistent; do
        run "$BIN" bench --cell "$1" --shape "$2" --recurrence "$recurrence" --runs 10 \
            --warmup 3 --json
    done
done
log "done"
