#!/usr/bin/env bash
# GLASS, PatchCore, PaDiM, DRAEM and the convolutional autoencoder side by side on the offline demo data
# (about 80 minutes on 2 cores, GLASS's 15 and DRAEM's 270 epochs per class being most of it):
#   1. build demo_data/ as shell/run-demo.sh does (skipped when already complete);
#   2. train/fit and test every method on every demo class with the same 256 px images and seed, the
#      backbone methods on the same efficientnet_lite0 (GLASS with run-demo.sh's settings; DRAEM and the
#      autoencoder with their CPU demo settings), time the engines side by side;
#   3. the temporal table: the ConvLSTM video autoencoder and the image methods on a gravel conveyor whose
#      belt stops for a second and jerks (results/compare/temporal.csv);
#   4. print results/compare/comparison.csv (chart: results/compare/comparison.png) and the temporal table.
# Models already in the results folder are reused, so a rerun only tests and times them (--fresh retrains).
# Usage: bash shell/run-compare.sh [compare_methods.py options, e.g. --glass_epochs 5 --fresh]
#        (PYTHON=/path/to/python to pick an interpreter; DEMO_ROOT=dir and RESULTS=dir to put the data and
#        the results elsewhere; CLASSES="brick" for fewer classes)
set -euo pipefail

demo_root=${DEMO_ROOT:-demo_data}      # where the demo dataset is built
datapath=$demo_root/mvtec
augpath=$demo_root/dtd/images
read -r -a classes <<< "${CLASSES:-brick gravel grass}"
results=${RESULTS:-results/compare}
python=${PYTHON:-python}

cd "$(dirname "$0")/.."
"$python" preprocessing/make_demo_dataset.py --output "$demo_root" --classes "${classes[@]}"

"$python" benchmarks/compare_methods.py \
    --data "$datapath" \
    --aug "$augpath" \
    --classes "${classes[@]}" \
    --methods glass patchcore padim draem ae convlstm \
    --backbone efficientnet_lite0 \
    --imagesize 256 \
    --resize 256 \
    --seed 0 \
    --output "$results" "$@"

echo
echo "Comparison ($results/comparison.csv, chart $results/comparison.png):"
if command -v column > /dev/null; then
    column -s, -t < "$results/comparison.csv"
else
    cat "$results/comparison.csv"
fi
if [ -f "$results/temporal.md" ]; then
    echo
    echo "Temporal anomalies ($results/temporal.csv):"
    cat "$results/temporal.md"
fi
