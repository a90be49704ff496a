#!/usr/bin/env bash
# One GPU window, used fully: the GPU-marked tests, the restore and scale benchmarks with the
# emulator, and a short emulator training whose model card certifies it against PhysicalForward
# (or says where it does not), every result written under one folder.
#
#   bash benchmarks/gpu_session.sh [OUTPUT_DIR]            # about 10 minutes on one GPU
#   bash benchmarks/gpu_session.sh --dry-run [OUTPUT_DIR]  # the same steps, tiny, on a CPU (a minute or two)
#
# OUTPUT_DIR defaults to $OUT (the device machine's return folder) or ./gpu-session. Each step's
# log is kept; a failing step is recorded in summary.txt and the next one still runs. Each step has
# a time limit (exit 124 when it was reached), so that the whole session stays within 10 minutes.
set -u
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out="${1:-${OUT:-gpu-session}}"
mkdir -p "$out"
here="$(cd "$(dirname "$0")" && pwd)"
summary="$out/summary.txt"
: > "$summary"

step() {  # step NAME SECONDS COMMAND...: run it (killed after SECONDS), log it, record its exit status and duration
    local name="$1" limit="$2"; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status, $((SECONDS - start)) s" | tee -a "$summary"
}

if [ $dry = 1 ]; then
    sizes=(64 96); iterations=1; restore=(--quick --methods mean momfbd); epochs=1; steps=2; minutes=1
else
    sizes=(256 512 1024); iterations=10; restore=(--quick --methods mean momfbd torchmfbd emulator oracle)
    epochs=20; steps=100; minutes=2
fi

step device 30 python -c "import torch, sunpy_momfbd; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA', sunpy_momfbd.__version__)"
step gpu_tests 60 python -m pytest -q -p no:cacheprovider -p no:benchmark -m gpu "$here/../tests"
step restore 120 python "$here/restore.py" "${restore[@]}" --output "$out/restore_quick.json"
step scale 150 python "$here/scale.py" --sizes "${sizes[@]}" --iterations $iterations --output "$out/scale.json"

cat > "$out/train.toml" <<EOF
[optim]
epochs = $epochs
steps_per_epoch = $steps
max_minutes = $minutes

[run]
output = "$out/emulator-training"
resume = false
EOF
step train 150 sunpy-momfbd train --config "$out/train.toml" --no-progress
step emulator_accuracy 60 python "$here/emulator_accuracy.py" --emulator "$out/emulator-training/emulator" \
    --n $([ $dry = 1 ] && echo 4 || echo 96) --sizes $([ $dry = 1 ] && echo 64 || echo "256 512 1024") \
    --output "$out/emulator_accuracy.json"
echo "results in $out"
