#!/usr/bin/env bash
# Issue 19's levers at equal steps, each a fine-tune of the shipped student (models/fan-student.pt):
# STEPS more steps as its last stage was made (Charbonnier, noise-relative level weighting, lr 3e-4
# cosine; benchmarks/finetune_student.sh), the same seed and so the same photos and shot levels in the
# same order; one setting changed per lever. Then the start and every fine-tune on the noise grid
# (benchmarks/noise_grid.py: held-out photos, 6 shot levels x read noise 0.1x / 1x / 10x UPI's line,
# BM3D given the true noise). The levers:
#   rb0      the control: today's settings (read noise in UPI's narrow scatter around its line)
#   rb2.3    read noise log-uniform within 0.1x-10x the line (data.read_band=2.3, the grid's span)
#   crop128  crops of 128 from 136-pixel patches, 4 a step: the same pixels a step, 4x the context a crop
#            (the lowest level sees 8x8 instead of 4x4)
# Writes benchmarks/results/student_levers.{md,json,png} and the fine-tunes with their cards,
# models/ablations/fan-student-<lever>.{pt,md,json} (not shipped: a new student would need the array and
# its int8 checkpoints re-made).
# Usage: benchmarks/student_levers.sh   (STEPS=3000; on 2 cores ~9 min a fine-tune and ~11 min for the
#   grid; a lever whose model exists is not trained again, an interrupted one resumes from runs/<name>/)
set -euo pipefail
STEPS=${STEPS:-3000}
MODELS=models/ablations
LARGE_CACHE=$(python -c "import sys; sys.path.insert(0, 'benchmarks')
from int8_recipe import LARGE_CACHE, large_patch_cache
large_patch_cache(); print(LARGE_CACHE)")
LEVERS=(  # name: settings
  "rb0: data.read_band=0"
  "rb2.3: data.read_band=2.3"
  "crop128: data.cache=$LARGE_CACHE data.crop=128 data.batch=4"
)
COMMON="model.init=models/fan-student.pt schedule.lr=0.0003 schedule.steps=$STEPS schedule.warmup=20 loss.level_weighting=relative"
mkdir -p runs
names=()
for lever in "${LEVERS[@]}"; do
  name="fan-student-${lever%%:*}"
  names+=("$name")
  [ -f "$MODELS/$name.pt" ] && continue
  # shellcheck disable=SC2086  # COMMON and the lever's settings hold several settings on purpose
  fad-train charbonnier name="$name" $COMMON ${lever#*:} --threads 2 --ship "$MODELS/$name.pt" </dev/null
done
python benchmarks/noise_grid.py --models fan-student "${names[@]}" --baselines bm3d --name student_levers \
  --cards "${names[@]}"
