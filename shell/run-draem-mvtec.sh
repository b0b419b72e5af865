#!/usr/bin/env bash
# DRAEM on MVTec AD with the paper's settings (Zavrtanik et al. 2021): 256 px, batch 8, 700 epochs, Adam lr 1e-4
# (a fifth at 80 % and 90 % of the epochs), reconstructive width 128, discriminative width 64, anomalies in half
# of the training images, image score = the highest 21 x 21 average of the anomaly map.
# Anomalies: Perlin masks filled with DTD textures (GLASS's LAS, the same texture folder); the blend factor
# beta is drawn from a normal (--mean, --std) clipped to [0.2, 0.8]; the paper draws it uniformly in [0, 0.8].
# A GPU run: about 700 epochs of a few hundred images per class. On a CPU use the demo setting of
# benchmarks/compare_methods.py (narrow networks, 30 epochs).
# Edit datapath / augpath / classes below, then run from anywhere: bash shell/run-draem-mvtec.sh
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
  draem \
    --recon_width 128 \
    --disc_width 64 \
    --epochs 700 \
    --lr 0.0001 \
    --anomaly_probability 0.5 \
    --score_window 21 \
    --crop 0 \
  dataset \
    --mean 0.5 \
    --std 0.1 \
    --fg 0 \
    --rand_aug 1 \
    --batch_size 8 \
    --resize 256 \
    --imagesize 256 "${flags[@]}" mvtec "$datapath" "$augpath"
