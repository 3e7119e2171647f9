#!/usr/bin/env bash
# Trains and scores the rows of the toolbox table in docs/RESULTS.md, one after the
# other (one heavy job at a time on a small machine). Each row is one train.py
# command from configs/fashion_mnist_table.py plus its switches; its FID-10k, KID,
# precision/recall/density/coverage and training minutes land in
# RUNS/ROW/eval/history.jsonl. A row already finished is skipped (train.py says so),
# and an interrupted one resumes from its checkpoint.
#
#   scripts/fashion_mnist_table.sh [RUNS_DIR] [ROW ...]     (default: runs/table, all rows)
#   python -m gan_jax.plot RUNS_DIR/* --out docs/fid_table.png
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-runs/table}
shift || true

declare -A flags=(
  [baseline]=""
  [ema]="--config.ema_decay=0.999"
  [sn_hinge]="--config.spectral_norm=True --config.loss=hinge"
  [lsgan]="--config.loss=least_squares"
  [ttur]="--config.g_learning_rate=1e-4 --config.d_learning_rate=4e-4"
  [conditional]="--config.conditional=True"
  # Trained on the first 10% of the images, scored against the same real images as every row.
  [data10]="--config.split=train[:10%] --config.eval_split=train"
  [data10_diffaugment]="--config.split=train[:10%] --config.eval_split=train --config.diff_augment=color,translation,cutout"
  [wgan_gp]="--config.loss=wasserstein --config.gp_weight=10 --config.n_dis=5 --config.g_learning_rate=1e-4 --config.d_learning_rate=1e-4 --config.b1=0.0 --config.b2=0.9"
  # The recipe's switches (configs/fashion_mnist_best.py) at the table's budget.
  [recipe]="--config.ema_decay=0.999 --config.diff_augment=translation"
)
order=(baseline ema sn_hinge lsgan ttur conditional data10 data10_diffaugment wgan_gp recipe)

for row in "${@:-${order[@]}}"; do
  if [[ -z ${flags[$row]+set} ]]; then
    echo "unknown row '$row': choose from ${order[*]}" >&2
    exit 2
  fi
  echo "== $row: ${flags[$row]:-(no switches)}"
  # shellcheck disable=SC2086  # the switches are words on purpose
  python train.py --config configs/fashion_mnist_table.py --workdir "$runs/$row" ${flags[$row]}
done
