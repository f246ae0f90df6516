#!/usr/bin/env bash
# Prepares, on this machine, what scripts/device_check.sh needs on a lent GPU machine (which
# has no Rust toolchain and no network), into the ignored folders the `device` tool carries:
#   .device/rnn-wgpu, .device/gemm_speed   this tree's release build, stripped (the debug info
#                                          would crowd the 64 MiB a call carries)
#   .device/rnn-wgpu-before                the build of BEFORE_REV (default 69aa2f9, the commit
#                                          BENCHMARKS.md's H200 table measured), from a git
#                                          worktree under target/, so the device run times the
#                                          two side by side; BEFORE_REV=none leaves it out
#   .gl/libvulkan1_*.deb                   Debian's Vulkan loader (amd64), which device_check.sh
#                                          unpacks where the machine has none; the NVIDIA ICD
#                                          file is on the machine
# Then: run(command="bash scripts/device_check.sh", carry=[".device", ".gl"], timeout_s=540).
# From a fresh checkout on 2 cores it takes about 10 minutes (two release builds).
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE_REV="${BEFORE_REV:-69aa2f9}"

echo "== this tree's build"
cargo build --release --bin rnn-wgpu --example gemm_speed
mkdir -p .device
strip -o .device/rnn-wgpu target/release/rnn-wgpu
strip -o .device/gemm_speed target/release/examples/gemm_speed
git describe --always --dirty >.device/rnn-wgpu.commit

if [ "$BEFORE_REV" = none ]; then
    rm -f .device/rnn-wgpu-before .device/rnn-wgpu-before.commit
else
    echo "== the build of $BEFORE_REV (.device/rnn-wgpu-before)"
    tree=target/device-before
    git worktree prune
    [ -e "$tree/.git" ] || git worktree add --detach "$tree" "$BEFORE_REV"
    git -C "$tree" checkout -q --detach "$BEFORE_REV"
    # its own target folder: the two builds share no artefacts, and neither rebuilds the other
    (cd "$tree" && CARGO_TARGET_DIR="$PWD/../device-before-target" cargo build --release \
        --bin rnn-wgpu)
    strip -o .device/rnn-wgpu-before target/device-before-target/release/rnn-wgpu
    git rev-parse --short "$BEFORE_REV" >.device/rnn-wgpu-before.commit
fi

echo "== the Vulkan loader (.gl)"
lists=/tmp/device-kit-apt-lists
mkdir -p .gl "$lists/partial"
apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists"
    -oAPT::Sandbox::User=root)
apt-get "${apt_options[@]}" update -q >/dev/null
rm -f .gl/*.deb
(cd .gl && apt-get "${apt_options[@]}" download libvulkan1)

ls -l .device .gl
du -ch .device .gl | tail -1
