#!/usr/bin/env bash
# GLASS on your own classes in MVTec AD layout with the paper settings (wideresnet50, 288 px, 640 epochs).
# Edit datapath / augpath / classes below, then run from anywhere: bash shell/run-custom.sh
# Relative paths are taken from the repository root (the script cd's there).
# Layout: <datapath>/<class>/train/good, test/<good|defect>, ground_truth/<defect>/<name>_mask.png.
# --distribution 2 (manifold: no saved table for new classes), --fg 0 (no foreground masks).
set -euo pipefail

datapath=/root/dataset/Custom
augpath=/root/dataset/dtd/images
classes=('class1' 'class2')
flags=()
for class in "${classes[@]}"; do flags+=(-d "$class"); done

cd "$(dirname "$0")/.."
python main.py \
    --gpu 0 \
    --seed 0 \
    --test ckpt \
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
  dataset \
    --distribution 2 \
    --mean 0.5 \
    --std 0.1 \
    --fg 0 \
    --rand_aug 1 \
    --batch_size 8 \
    --resize 288 \
    --imagesize 288 "${flags[@]}" mvtec "$datapath" "$augpath"
