#!/usr/bin/env bash
# The kernels on matrix units (shaders/gemm_coop.wgsl, shaders/step_coop.wgsl) on real
# cooperative-matrix operations, on a machine without a GPU: Mesa's lavapipe lists
# VK_KHR_cooperative_matrix (8x8x8 f16 tiles, f16 or f32 accumulators) in the Mesa of Debian 13's
# backports (26.1), not in Debian 12's (22.3). The script makes a Debian 13 root under target/
# with that Mesa (debootstrap; needs root, or sudo, and apt-get), binds this checkout into it at
# the same path, and runs there with RNN_WGPU_MATRIX_UNITS=on:
#   - `rnn-wgpu devices`, which must list an f16 -> f32 cooperative-matrix shape;
#   - `rnn-wgpu parity --precision f16` for every cell at awkward sizes, which must say the
#     matrix units are on and exits non-zero beyond its tolerance;
#   - every GPU test, on this second driver: the f16 work of the shared context then runs on
#     the adapter's own matrix units, and the contexts of the matrix units' tests include one
#     on them (tests/gpu/main.rs, `matrix_unit_contexts`), which must be on. This Mesa also
#     differs from Debian 12's in ways that matter elsewhere: it flushed a subnormal f32 sum
#     to zero where Debian 12's kept it, as many GPUs do.
# The programs run are those built here (target/release): run `cargo test --release` first
# (.ci/run does, through README's test command). Extra arguments go to the GPU test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
root="$repo/target/matrix-units-root"
mirror="http://deb.debian.org/debian"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The root, once: Debian 13 with Mesa's Vulkan driver from its backports. apt is told not to
# refuse a Release file past its Valid-Until date (backports' expire within a week, and a
# mirror may be a snapshot).
if [ ! -e "$root/.ready" ]; then
    command -v debootstrap >/dev/null || {
        command -v apt-get >/dev/null || {
            echo "error: making the root needs debootstrap (Debian's package), or apt-get" \
                "to install it" >&2
            exit 1
        }
        $SUDO apt-get install -y -q debootstrap
    }
    echo "== a Debian 13 root with Mesa from trixie-backports in $root"
    $SUDO rm -rf "$root"
    $SUDO debootstrap --variant=minbase trixie "$root" "$mirror" >"$repo/target/debootstrap.log" ||
        { tail -20 "$repo/target/debootstrap.log" >&2; exit 1; }
    echo "deb $mirror trixie-backports main" | $SUDO tee "$root/etc/apt/sources.list.d/backports.list" >/dev/null
    $SUDO cp /etc/resolv.conf "$root/etc/resolv.conf"
    $SUDO chroot "$root" apt-get -o Acquire::Check-Valid-Until=false update -q
    $SUDO chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends -t trixie-backports mesa-vulkan-drivers libvulkan1
    $SUDO touch "$root/.ready"
fi

# What runs in the root: this checkout at its own path (the tests find their files and the
# binary by absolute paths), /proc, and a runtime directory for Mesa.
cleanup() {
    $SUDO umount "$root$repo" 2>/dev/null || true
    $SUDO umount "$root/proc" 2>/dev/null || true
}
trap cleanup EXIT
$SUDO mkdir -p "$root$repo" "$root/proc" "$root/tmp/xdg"
$SUDO mount --bind "$repo" "$root$repo"
$SUDO mount -t proc proc "$root/proc"
in_root() {
    $SUDO chroot "$root" env -C "$repo" XDG_RUNTIME_DIR=/tmp/xdg RNN_WGPU_MATRIX_UNITS=on "$@"
}

bin=target/release/rnn-wgpu
tests=$(cargo test --release --test gpu --no-run 2>&1 | grep -o 'target/release/deps/gpu-[0-9a-f]*' | tail -1)
[ -x "$bin" ] && [ -n "$tests" ] || {
    echo "error: build first: cargo test --release (no $bin or GPU test binary)" >&2
    exit 1
}

echo "== the adapter in the root (rnn-wgpu devices)"
devices=$(in_root "$bin" devices)
echo "$devices"
grep -q 'cooperative matrices .*F16->F32' <<<"$devices" || {
    echo "error: the root's adapter lists no f16 -> f32 cooperative matrices" >&2
    exit 1
}

echo "== f16 parity on the matrix units, every cell"
parity() {
    local out
    out=$(in_root "$bin" parity --precision f16 "$@" 2>&1) || { echo "$out"; return 1; }
    grep -q '^matrix units: on' <<<"$out" || { echo "$out"; echo "error: matrix units off" >&2; return 1; }
    echo "parity $*: $(tail -1 <<<"$out")"
}
for cell in lstm gru rnn; do
    parity --cell "$cell" --batch 5 --seq-len 33 --input 7 --hidden 17
done
# M, N and K past a block of tiles at odd sizes; K = T * B = 10,240 split into parts; stacked
# and bidirectional
parity --cell lstm --batch 67 --seq-len 40 --input 33 --hidden 129
parity --cell lstm --batch 64 --seq-len 160 --input 9 --hidden 33
parity --cell gru --batch 3 --seq-len 9 --input 3 --hidden 5 --layers 2 --bidirectional

echo "== every GPU test on the root's adapter, the matrix units on"
in_root "$tests" "$@"
