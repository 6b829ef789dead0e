#!/usr/bin/env bash
# Builds the firmware and runs it on QEMU's lm3s6965evb (Cortex-M3), then
# checks what it printed over semihosting. Installs what it needs: the
# thumbv7m-none-eabi target (rustup) and qemu-system-arm (apt-get) when
# missing. Fails when the firmware fails, panics, hangs (timeout 120 s) or
# leaves out a scenario's `ok` line. FIRMWARE_TIMEOUT overrides the 120 s.
set -euo pipefail
cd "$(dirname "$0")"

# Every line the firmware prints for a passing run, besides the summary.
scenarios=(
    pysagas_readme
    long_saga_100_steps
    deep_saga_500_steps
    typed_steps
    flow
    parallel_group
    abort
    tick_timer
    observer
    custom_step_and_cancel
    compensation_modes
    durable_page_journal
    flash_journal_power_cuts
    heap
    heap_returns_to_start
)

if ! command -v qemu-system-arm >/dev/null; then
    echo "installing qemu-system-arm"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-system-arm >/dev/null
fi
rustup target add thumbv7m-none-eabi

cargo build --release

output="$(mktemp)"
trap 'rm -f "$output"' EXIT
status=0
limit="${FIRMWARE_TIMEOUT:-120}"
# `cargo run` runs QEMU (the runner in .cargo/config.toml); the firmware's
# semihosting exit status is QEMU's.
timeout -k 10 "$limit" cargo run --release </dev/null 2>&1 | tee "$output" || status=$?
if [ "$status" -ne 0 ]; then
    if [ "$status" -eq 124 ]; then
        echo "firmware: timed out after $limit s" >&2
    else
        echo "firmware: exited with status $status" >&2
    fi
    exit 1
fi

missing=0
for name in "${scenarios[@]}"; do
    if ! grep -qx "ok $name" "$output"; then
        echo "firmware: no 'ok $name' line" >&2
        missing=1
    fi
done
if grep -q '^FAIL ' "$output"; then
    echo "firmware: a scenario failed" >&2
    missing=1
fi
if ! grep -qx "${#scenarios[@]} passed, 0 failed" "$output"; then
    echo "firmware: no '${#scenarios[@]} passed, 0 failed' line" >&2
    missing=1
fi
[ "$missing" -eq 0 ] || exit 1

# Sizes, when binutils for ARM are there (apt-get install binutils-arm-none-eabi).
elf="${CARGO_TARGET_DIR:-target}/thumbv7m-none-eabi/release/saga-firmware"
if command -v arm-none-eabi-size >/dev/null && [ -f "$elf" ]; then
    arm-none-eabi-size "$elf"
fi
echo "firmware: all ${#scenarios[@]} checks passed on the lm3s6965evb"
