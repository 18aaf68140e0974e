#!/bin/bash
# Every GPU measurement in one call on a machine with a GPU (see BENCHMARKS.md): the adapter,
# `ddpm bench` with and without split-K and a per-kernel profile of the step, the same UNet step
# in PyTorch (eager, CUDA graphs, torch.compile), a timed run of the default job (`ddpm train`,
# interrupted at a deadline, then `ddpm sample` from its checkpoint), and the GPU-facing test
# binaries. Binaries are built elsewhere and unpacked from
# .devbin/bins.tar.xz, made by scripts/gpu_bundle.sh (the GPU machine has no Rust toolchain);
# everything lands in $OUT.
#     OUT=/tmp/out LIMIT=570 TRAIN_MAX=330 [EMOJI_S=120] [TORCH_S=200] bash scripts/gpu_session.sh
# (TRAIN_MAX: seconds of the default job at most; EMOJI_S: seconds of `--preset emoji`, 0 = none;
# TORCH_S: seconds of the PyTorch timings at most.)
set -u
OUT=${OUT:-/tmp/ddpm-gpu}
LIMIT=${LIMIT:-570}
TRAIN_MAX=${TRAIN_MAX:-330}
mkdir -p "$OUT"
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((LIMIT - $(elapsed))); }
stage() { echo "== $* (t=$(elapsed)s)"; }

if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export WGPU_BACKEND=vulkan
mkdir -p bin target/release
tar -xJf .devbin/bins.tar.xz -C bin
cp bin/ddpm target/release/ddpm
# The CLI tests run the binary at the path cargo baked in at build time.
baked=/work/main
if [ "$PWD" != "$baked" ] && [ ! -e "$baked" ]; then
    mkdir -p "$(dirname "$baked")" && ln -s "$PWD" "$baked"
fi
DDPM=./target/release/ddpm

stage info
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$OUT/info.txt"
$DDPM info 2>&1 | tee -a "$OUT/info.txt"

stage bench
timeout 120 $DDPM bench 2>&1 | tee "$OUT/bench.txt"
stage "conv and step without split-K (DDPM_TILED_WORKGROUPS=1), to compare on this card"
DDPM_TILED_WORKGROUPS=1 DDPM_BENCH_FILTER="conv" timeout 40 $DDPM bench 2>&1 | tee "$OUT/bench-nosplit.txt"
DDPM_TILED_WORKGROUPS=1 DDPM_BENCH_FILTER="training step" timeout 40 $DDPM bench 2>&1 |
    tee -a "$OUT/bench-nosplit.txt"
stage "split-K target sweep: the batch-64 step at other DDPM_TILED_WORKGROUPS (512 is the default)"
for wg in 128 256 1024 2048; do
    echo "DDPM_TILED_WORKGROUPS=$wg" | tee -a "$OUT/bench-sweep.txt"
    DDPM_TILED_WORKGROUPS=$wg DDPM_BENCH_FILTER="UNet training step (batch 64)" timeout 25 \
        $DDPM bench 2>&1 | grep -E "step|host" | tee -a "$OUT/bench-sweep.txt"
done
stage "step profile"
DDPM_PROFILE=1 DDPM_BENCH_FILTER="training step (batch 64)" timeout 40 $DDPM bench 2>&1 |
    tee "$OUT/profile.txt" | tail -40

stage torch
# eager and whole-step CUDA graphs (strict fp32 and TF32), then torch.compile (strict fp32): one
# line each as measured, so a timeout during compiling keeps the others.
PYTHONUNBUFFERED=1 timeout "${TORCH_S:-200}" python3 scripts/torch_unet_step.py 2>&1 |
    tee "$OUT/torch.txt"

stage train
run=/tmp/run-mnist
train_s=$(($(left) - 170 - ${EMOJI_S:-0}))
[ "$train_s" -gt "$TRAIN_MAX" ] && train_s=$TRAIN_MAX
# The stages above ran long: a minute of training still times the steps (the tests then get less).
[ "$train_s" -lt 60 ] && train_s=60
echo "training for $train_s s"
start=$(date +%s)
timeout -s INT -k 30 "$train_s" $DDPM train --out "$run" > "$OUT/train.txt" 2>&1
echo "train exit $? after $(($(date +%s) - start)) s"
tail -5 "$OUT/train.txt"
ls -l --time-style=+%s "$run" | tee -a "$OUT/train.txt"
echo "train start $start" >> "$OUT/train.txt"

stage sample
if [ ! -f "$run/samples.png" ] && [ -f "$run/checkpoint.safetensors" ]; then
    timeout 60 $DDPM sample --checkpoint "$run/checkpoint.safetensors" --out "$run" --n 64 2>&1 |
        tee -a "$OUT/train.txt"
fi
tar --exclude='*.safetensors' --exclude='*.tmp' -czf "$OUT/run.tar.gz" -C "$run" .

if [ "${EMOJI_S:-0}" -gt 0 ]; then
    stage "emoji for $EMOJI_S s"
    timeout -s INT -k 30 "$EMOJI_S" $DDPM train --preset emoji --out /tmp/run-emoji > "$OUT/emoji.txt" 2>&1
    tail -3 "$OUT/emoji.txt"
    tar --exclude='*.safetensors' --exclude='*.tmp' -czf "$OUT/emoji.tar.gz" -C /tmp/run-emoji .
fi

stage tests
for t in ops unet_model autograd training image_training importance_sampling iddpm ddpm cli; do
    exe=$(ls bin/"$t"-* 2>/dev/null | head -1)
    budget=$(($(left) - 5))
    [ "$budget" -lt 10 ] && { echo "no time left for $t" | tee -a "$OUT/tests.txt"; continue; }
    echo "-- $t" >> "$OUT/tests.txt"
    timeout "$budget" "$exe" --test-threads 8 >> "$OUT/tests.txt" 2>&1
    echo "$t exit $?" | tee -a "$OUT/tests.txt"
done
grep -E "test result|FAILED|panicked" "$OUT/tests.txt" | head -30
stage done
