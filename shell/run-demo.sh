#!/usr/bin/env bash
# Offline end-to-end demo on CPU (about 10 minutes on 2 cores):
#   1. build demo_data/ from photos bundled with scikit-image (textures + synthetic defects,
#      plus a DTD-style texture folder for LAS); skipped when already complete;
#   2. train and test GLASS with the efficientnet_lite0 backbone on every demo class;
#   3. print results/demo/results.csv.
# Usage: bash shell/run-demo.sh      (PYTHON=/path/to/python to pick an interpreter;
#        DEMO_ROOT=dir and RESULTS=dir to put the data and the results elsewhere)
set -euo pipefail

demo_root=${DEMO_ROOT:-demo_data}      # where the demo dataset is built
datapath=$demo_root/mvtec
augpath=$demo_root/dtd/images
classes=('brick' 'gravel' 'grass')
results=${RESULTS:-results/demo}
python=${PYTHON:-python}
flags=()
for class in "${classes[@]}"; do flags+=(-d "$class"); done

cd "$(dirname "$0")/.."
"$python" preprocessing/make_demo_dataset.py --output "$demo_root" --classes "${classes[@]}"

"$python" main.py \
    --gpu 0 \
    --seed 0 \
    --test ckpt \
    --results_path "$results" \
  net \
    -b efficientnet_lite0 \
    -le blocks.2 \
    -le blocks.4 \
    --pretrain_embed_dimension 512 \
    --target_embed_dimension 512 \
    --patchsize 3 \
    --meta_epochs 15 \
    --eval_epochs 5 \
    --dsc_layers 2 \
    --dsc_hidden 512 \
    --pre_proj 1 \
    --mining 1 \
    --noise 0.015 \
    --radius 0.75 \
    --p 0.5 \
    --step 20 \
    --limit 392 \
    --lr 0.0005 \
    --select last \
  dataset \
    --distribution 1 \
    --mean 0.5 \
    --std 0.1 \
    --fg 0 \
    --rand_aug 1 \
    --batch_size 8 \
    --resize 256 \
    --imagesize 256 "${flags[@]}" mvtec "$datapath" "$augpath"

echo
echo "Results ($results/results.csv):"
if command -v column > /dev/null; then
    column -s, -t < "$results/results.csv"
else
    cat "$results/results.csv"
fi
