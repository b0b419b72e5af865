#!/usr/bin/env bash
# GLASS on MVTec AD with the paper settings (wideresnet50, 288 px, 640 epochs).
# Edit datapath / augpath / classes below, then run from anywhere: bash shell/run-mvtec.sh
# Relative paths are taken from the repository root (the script cd's there).
# Several GPUs of this machine: --gpu 0 1 2 3 below. A Ray cluster: RAY_ADDRESS=auto bash shell/run-mvtec.sh
# (README, "Scale out").
set -euo pipefail

datapath=/root/dataset/MVTec
augpath=/root/dataset/dtd/images
classes=('carpet' 'grid' 'leather' 'tile' 'wood' 'bottle' 'cable' 'capsule' 'hazelnut' 'metal_nut' 'pill' 'screw' 'toothbrush' 'transistor' 'zipper')
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
    --distribution 0 \
    --mean 0.5 \
    --std 0.1 \
    --fg 1 \
    --rand_aug 1 \
    --batch_size 8 \
    --resize 288 \
    --imagesize 288 "${flags[@]}" mvtec "$datapath" "$augpath"
