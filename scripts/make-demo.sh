#!/usr/bin/env bash
# Rebuild the built-in demo model, edge_yolox/demo/yolox-nano-shapes-int8.ncnn (what `edge-yolox run --demo`
# runs), in one command:
#
#   scripts/make-demo.sh [WORK_DIR]          # default WORK_DIR: runs/demo
#
# 1. generate 3000 training and 300 held-out synthetic scenes (edge_yolox.scene: circle, square, triangle, star
#    on textured backgrounds, 416 px; seeds 1 and 2);
# 2. fine-tune the official YOLOX-Nano COCO weights to the four shapes with `edge-yolox train`: 320 px, batch 16,
#    4 epochs (1 warmup, the last without mosaic), one torch thread;
# 3. export an INT8 NCNN bundle at 320 px, calibrated on 200 of the training scenes;
# 4. evaluate it on the held-out scenes (COCO AP through pycocotools) and copy it into edge_yolox/demo/.
#
# Measured on this project's 2 shared CPU cores (no GPU): training 46 min; INT8 bundle 1.1 MB; held-out
# AP50:95 0.830, AP50 0.964 (the PyTorch fp32 checkpoint: 0.836, 0.966).
#
# Environment: PYTHON (default /work/venv/bin/python, else python3), WEIGHTS (default
# ../shared/data/weights/yolox_nano_coco.pth), EPOCHS (default 4). Generation and a finished training are
# skipped and an interrupted training resumes, so a rerun after a failure continues; delete WORK_DIR to start over.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(realpath -m "${1:-$ROOT/runs/demo}")
PYTHON=${PYTHON:-$( [ -x /work/venv/bin/python ] && echo /work/venv/bin/python || command -v python3 )}
WEIGHTS=${WEIGHTS:-$ROOT/../shared/data/weights/yolox_nano_coco.pth}
EPOCHS=${EPOCHS:-4}
NAME=yolox-nano-shapes-int8.ncnn
SIZE=320
CLI=("$PYTHON" -m edge_yolox.cli)
mkdir -p "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # on 2 cores one torch thread beside the loader worker is fastest

echo "== 1/4 synthetic scenes -> $WORK/{train,val}"
"$PYTHON" - "$WORK" <<'EOF'
import sys
from pathlib import Path
from edge_yolox.train.data.synthetic import generate_scenes
work = Path(sys.argv[1])
for split, count, seed in (("train", 3000, 1), ("val", 300, 2)):
    if not (work / split / "annotations" / "instances.json").exists():
        generate_scenes(work / split, count, seed=seed)
EOF

echo "== 2/4 fine-tune YOLOX-Nano ($EPOCHS epochs, ${SIZE} px) -> $WORK/train-run"
CKPT=$WORK/train-run/last_ckpt.pth
if [ ! -f "$WORK/train-run/done" ]; then
  resume=()
  [ -f "$CKPT" ] && resume=(--resume "$CKPT")  # an interrupted run continues exactly where it stopped
  start=$SECONDS
  "${CLI[@]}" train --variant nano --data "$WORK/train" --epochs "$EPOCHS" \
    --batch 16 --img-size "$SIZE" --multiscale off --warmup-epochs 1 --no-aug-epochs 1 --eval-interval 0 \
    --workers 1 --weights "$WEIGHTS" --out "$WORK/train-run" "${resume[@]}"
  echo "training took $((SECONDS - start)) s"
  touch "$WORK/train-run/done"
fi

echo "== 3/4 INT8 NCNN export -> $WORK/$NAME"
"${CLI[@]}" export --weights "$CKPT" --variant nano --format ncnn --precision int8 --img-size "$SIZE" \
  --names "$WORK/val" --calib "$WORK/train/images" --calib-n 200 --out "$WORK/$NAME"

echo "== 4/4 held-out AP, then install into edge_yolox/demo/"
"${CLI[@]}" eval --model "$WORK/$NAME" --data "$WORK/val" --per-class --json "$WORK/$NAME.eval.json" --no-progress
rm -rf "$ROOT/edge_yolox/demo/$NAME"
mkdir -p "$ROOT/edge_yolox/demo"
cp -r "$WORK/$NAME" "$ROOT/edge_yolox/demo/$NAME"
du -b "$ROOT/edge_yolox/demo/$NAME"/* | sed 's/^/  /'
echo "installed edge_yolox/demo/$NAME; try: edge-yolox run --demo --limit 100"
