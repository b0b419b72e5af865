#!/usr/bin/env bash
# Train (then test) GLASS on ONE custom class in MVTec AD layout, paper settings.
# Usage: bash shell/run-custom-training.sh [class]      (default: the class set below)
# Layout: <datapath>/<class>/train/good/*.png, <datapath>/<class>/test/good/*.png,
#         <datapath>/<class>/test/<defect>/*.png, <datapath>/<class>/ground_truth/<defect>/<name>_mask.png
# Relative paths are taken from the repository root (the script cd's there).
# --distribution 2: manifold (no saved table for a new class; 1 judges it from the images instead).
# --fg 0: no foreground masks. Lower --meta_epochs for a quick first try.
set -euo pipefail

datapath=/root/dataset/Custom
augpath=/root/dataset/dtd/images
class=${1:-class1}
results=results/custom

cd "$(dirname "$0")/.."
python main.py \
    --gpu 0 \
    --seed 0 \
    --test ckpt \
    --results_path "$results" \
  net \
    -b wideresnet50 \
    -le layer2 \
    -le layer3 \
    --pretrain_embed_dimension 1536 \
    --target_embed_dimension 1536 \
    --patchsize 3 \
    --meta_epochs 640 \
    --eval_epochs 1 \
    --dsc_layers 2 \
    --dsc_hidden 1024 \
    --pre_proj 1 \
    --mining 1 \
    --noise 0.015 \
    --radius 0.75 \
    --p 0.5 \
    --step 20 \
    --limit 392 \
    --select last \
  dataset \
    --distribution 2 \
    --mean 0.5 \
    --std 0.1 \
    --fg 0 \
    --rand_aug 1 \
    --batch_size 8 \
    --resize 288 \
    --imagesize 288 \
    -d "$class" mvtec "$datapath" "$augpath"
