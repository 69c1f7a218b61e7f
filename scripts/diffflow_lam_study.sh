#!/usr/bin/env bash
# Which particles should a ve DiffFlow discriminator be trained on? The toy study of the README (GPM's pentagon, the
# trained toy-pentagon-score, a deliberately coarse 16-level grid so that the samplers' discretisation error shows):
# one discriminator trained on the l = 1 sampler's trajectories (the default), one on the l = 0.5 sampler's own
# states with the discriminator in the loop (--lam 0.5), one on the l = 0 flow's (--lam 0); each evaluated at
# l = 0, 0.5 (and the score alone at l = 1, and both l without the discriminator) by scripts/eval_toy.py
# (SW_2 / noise floor, N = 5,000, mean over 3 fresh reference sets). About 15 minutes on one CPU thread.
#
#   bash scripts/diffflow_lam_study.sh [OUT]        # OUT defaults to runs/diffflow-lam-study
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/diffflow-lam-study}
mkdir -p "$OUT"
train() {  # NAME LAM
  gpm -q train discriminator --for diffflow --family ve --score toy-pentagon-score --data pentagon --sigma-max 20 \
    --prior-std 20.12 --n-steps 16 --pool 4096 --hidden 256 --depth 3 --steps 2000 -b 512 --lr 1e-3 --ema 0.99 \
    --threads 1 --eval-pool 0 --lam "$2" -o "$OUT/$1"
}
train l1 1
train l05 0.5
train l0 0
ev() {  # LABEL DISC PARAM...
  local label=$1 disc=$2; shift 2
  local ps=()
  for p in "$@"; do ps+=(--param "$p"); done
  echo "$label: $(python scripts/eval_toy.py --model diffflow --checkpoint toy-pentagon-diffflow \
    --discriminator "$OUT/$disc" "${ps[@]}" | tail -1)"
}
ev "score alone, l = 1" l1 lambda=1
ev "no discriminator, l = 0.5" l1 lambda=0.5 disc_weight=0
ev "no discriminator, l = 0" l1 lambda=0 disc_weight=0
for d in l1 l05 l0; do
  ev "disc trained on $d, l = 0.5" "$d" lambda=0.5
  ev "disc trained on $d, l = 0" "$d" lambda=0
done
