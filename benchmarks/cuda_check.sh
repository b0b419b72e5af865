#!/usr/bin/env bash
# The checks that need CUDA, in one run on a machine with a GPU (this CPU-only project's tests never reach CUDA).
#
#   bash benchmarks/cuda_check.sh MODEL_DIR CLASS VIDEO OUT_DIR
#
# MODEL_DIR/CLASS: a trained model (e.g. results/line_g/results/models/backbone_0 custom_line, from
# benchmarks/bench_line.py); VIDEO: a conveyor video with its ground-truth sidecar VIDEO.json. Writes logs and
# reports into OUT_DIR and prints, in this order:
#   1. the GPU seen by PyTorch;
#   2. tracking VIDEO with PyTorch on CUDA and on the CPU (same model, same settings), each report scored by
#      inference/evaluate_tracking.py, and the two reports compared defect by defect (areas, frames, scores);
#   3. the pipeline's frames per second on CUDA and where the time goes (benchmarks/bench_video.py, lite0 = MODEL_DIR);
#   4. GLASS training speed on CUDA (benchmarks/bench_train.py, lite0 and wideresnet50 with random weights, seconds
#      per epoch over EPOCHS (default 10) epochs), this toolkit's path with and without torch.compile and the
#      reference-style one (--literal) side by side on the same data.
# Each step has a time limit so that one slow step cannot take the others' time; all four take about 10 minutes
# on an H200 machine (its CPU stages are slower than a desktop's), so STEPS="2 3" runs only those.
set -uo pipefail
MODEL_DIR=$1; CLASS=$2; VIDEO=$3; OUT_DIR=$4
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
STEPS=${STEPS:-1 2 3 4}
export PYTHONUNBUFFERED=1
want() { [[ " $STEPS " == *" $1 "* ]]; }

if want 1; then echo "== 1. device"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"
fi

if want 2; then echo "== 2. tracking on cuda and on cpu"
for dev in cuda cpu; do
    start=$(date +%s%N)
    timeout 150 $PY inference/video_inference_with_tracking.py --model_path "$MODEL_DIR" --class_name "$CLASS" \
        --pixel_size 0.1 --no_organized_output --surface_window 1 --device $dev --backend torch \
        --video_path "$VIDEO" --output_path "$OUT_DIR/track_$dev.mp4" > "$OUT_DIR/track_$dev.log" 2>&1
    echo "tracking on $dev: rc $? in $(( ($(date +%s%N) - start) / 1000000 )) ms"
    $PY inference/evaluate_tracking.py "$OUT_DIR/track_${dev}_report.json" "$VIDEO.json" \
        --json "$OUT_DIR/evaluation_$dev.json" | tail -4
done
$PY - "$OUT_DIR" <<'EOF'
"""Compare the CUDA and CPU tracking reports defect by defect."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
missing = [dev for dev in ("cuda", "cpu") if not (out / f"evaluation_{dev}.json").exists()]
if missing:
    sys.exit(f"no comparison: no tracking report on {', '.join(missing)} (see {out}/track_<device>.log)")
reports = {dev: json.loads((out / f"track_{dev}_report.json").read_text()) for dev in ("cuda", "cpu")}
for dev, report in reports.items():
    print(dev, report["settings"]["backend"], report["performance"])
evals = {dev: json.loads((out / f"evaluation_{dev}.json").read_text()) for dev in ("cuda", "cpu")}
print(f"{'defect':<16}{'status cuda / cpu':<28}{'area error % cuda / cpu':<26}")
for gpu, cpu in zip(evals["cuda"]["defects"], evals["cpu"]["defects"]):
    errors = [d.get("area_error_percent") for d in (gpu, cpu)]
    shown = " / ".join("-" if e is None else f"{e:+.1f}" for e in errors)
    print(f"{gpu['defect_type']:<16}{gpu['status'] + ' / ' + cpu['status']:<28}{shown:<26}")
print("summary cuda:", evals["cuda"]["summary"])
print("summary cpu: ", evals["cpu"]["summary"])
EOF
fi

if want 3; then echo "== 3. pipeline speed on cuda (bench_video, lite0 = MODEL_DIR)"
timeout 240 $PY benchmarks/bench_video.py --models lite0 --backends torch --model_path "$MODEL_DIR" \
    --class_name "$CLASS" --texture gravel --sizes 320x256 1280x720 --frames 150 2>&1 \
    | grep -v "it/s\]\|s/it\]" | tee "$OUT_DIR/bench_video.txt" | tail -12
fi

if want 4; then echo "== 4. training speed on cuda (bench_train: this toolkit's path and the reference-style one)"
for backbone in efficientnet_lite0 wideresnet50; do
    flags=(-b $backbone --n_train 40 --epochs ${EPOCHS:-10})
    [[ $backbone == wideresnet50 ]] && flags+=(--imagesize 288 --random_weights)
    for path in optimised optimised_uncompiled literal; do
        extra=(); [[ $path == literal ]] && extra=(--literal); [[ $path == *uncompiled ]] && extra=(--compile off)
        timeout 100 $PY benchmarks/bench_train.py --device cuda --data_root "$OUT_DIR/demo_$backbone" "${flags[@]}" \
            "${extra[@]}" 2>&1 | grep -v "it/s\]\|s/it\]" | tee "$OUT_DIR/bench_train_${backbone}_$path.txt" \
            | grep -E "GLASS training|seconds per epoch|whole run"
    done
done
fi
echo "== done"
