#!/bin/bash
# Builds what scripts/gpu_session.sh runs on a lent GPU machine (which has no Rust toolchain):
# the release binary and the GPU-facing test binaries, stripped and packed into
# .devbin/bins.tar.xz (ignored by git; name .devbin and .gl in the device call's carry).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
tests="ops unet_model autograd training image_training importance_sampling iddpm cli"
list=$(cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
wanted = set(sys.argv[1].split())
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    if t["name"] in wanted or (t["name"] == "ddpm" and t["kind"] == ["lib"]):
        print(m["executable"])
' "$tests")
stage=$(mktemp -d)
cp target/release/ddpm $list "$stage"/
strip "$stage"/*
mkdir -p .devbin
tar -cJf .devbin/bins.tar.xz -C "$stage" .
rm -rf "$stage"
ls -la .devbin/bins.tar.xz
