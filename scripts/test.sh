#!/usr/bin/env bash
# The tests on a fresh machine: installs a Vulkan driver where none is present, then runs
# `cargo test --release` (extra arguments go to cargo test). The GPU tests need a Vulkan, Metal
# or DX12 adapter; on a machine without a GPU, Mesa's lavapipe (a Vulkan driver that runs the
# shaders on the CPU) is one.
#
# - Debian and Ubuntu: installs mesa-vulkan-drivers and libvulkan1 with apt-get (as root, or
#   through sudo) when no Vulkan driver is found.
# - Other Linux: says what to install (Fedora: mesa-vulkan-drivers vulkan-loader; Arch:
#   vulkan-swrast vulkan-icd-loader) and stops.
# - macOS (Metal) and Windows (DX12, Vulkan): the system's driver is enough; nothing to install.
#
# .ci/run calls this script after its formatting and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Mesa's drivers complain on every adapter they open when XDG_RUNTIME_DIR is unset.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

has_vulkan() {
    local icd=""
    compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null && icd=1
    compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null && icd=1
    # grep reads all of ldconfig's output (no -q): under pipefail an early exit of grep would
    # give ldconfig a SIGPIPE and read as "no loader".
    [ -n "$icd" ] && ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null
}

if [ "$(uname -s)" = Linux ] && ! has_vulkan; then
    if command -v apt-get >/dev/null; then
        echo "== no Vulkan driver found: installing Mesa's (mesa-vulkan-drivers libvulkan1)"
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null || {
                echo "error: installing Mesa's Vulkan driver needs root: run" \
                    "'apt-get install mesa-vulkan-drivers libvulkan1' as root, then this again" >&2
                exit 1
            }
            SUDO=sudo
        fi
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q mesa-vulkan-drivers libvulkan1
        has_vulkan || {
            echo "error: mesa-vulkan-drivers and libvulkan1 are installed, yet no Vulkan ICD file" \
                "(/usr/share/vulkan/icd.d, /etc/vulkan/icd.d) or no libvulkan.so.1 in ldconfig's" \
                "cache was found" >&2
            exit 1
        }
    else
        echo "error: no Vulkan driver found, and no apt-get to install one. Install Mesa's" \
            "Vulkan drivers and the Vulkan loader (Fedora: mesa-vulkan-drivers vulkan-loader;" \
            "Arch: vulkan-swrast vulkan-icd-loader), then run this again" >&2
        exit 1
    fi
fi

echo "== the adapters the GPU tests will use (rnn-wgpu devices)"
cargo run --release --quiet -- devices
echo "== cargo test --release $*"
cargo test --release "$@"
