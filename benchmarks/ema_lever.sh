#!/usr/bin/env bash
# Issue 19's averaged-weights lever at equal steps: the shipped student (models/fan-student.pt)
# fine-tuned STEPS more steps as its last stage was made (Charbonnier, noise-relative level
# weighting, lr 3e-4 cosine; benchmarks/finetune_student.sh), once shipping the last weights and
# once their exponential moving average (schedule.ema=EMA), the same batches in the same order;
# then both and the start measured by fad-eval on the held-out test photos (quality.py's set:
# 2 crops a photo, 6 shot levels). Writes benchmarks/results/ema_lever.{md,json}; the two models
# stay in their run folders, runs/fan-student-ema*/model.pt (their cards inside).
# Usage: benchmarks/ema_lever.sh   (STEPS=1500 EMA=0.999; on 2 cores ~9 min a run; resumes)
set -euo pipefail
STEPS=${STEPS:-1500}
EMA=${EMA:-0.999}
COMMON="model.init=models/fan-student.pt schedule.lr=0.0003 schedule.steps=$STEPS schedule.warmup=20 loss.level_weighting=relative"
mkdir -p runs
for ema in 0 "$EMA"; do
  # shellcheck disable=SC2086  # COMMON holds several settings on purpose
  fad-train charbonnier name="fan-student-ema$ema" $COMMON schedule.ema="$ema" --threads 2
done
out=benchmarks/results/ema_lever
{
  echo "# Averaged weights (EMA) at equal steps"
  echo
  echo "\`STEPS=$STEPS EMA=$EMA benchmarks/ema_lever.sh\` on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "fan-student: the shipped student, where both fine-tunes start; fan-student-ema0: $STEPS more steps, the last"
  echo "weights; fan-student-ema$EMA: the same run's exponential moving average (decay $EMA). Held-out test photos."
  echo
  echo '```'
  fad-eval models/fan-student.pt runs/fan-student-ema0/model.pt "runs/fan-student-ema$EMA/model.pt" \
    --images "${FAD_CACHE:-$HOME/.cache/fad-deploy}/photos/test" --crops-per-image 2 --levels 6 --threads 2 \
    --json "$out.json"
  echo '```'
} >"$out.md.tmp"
mv "$out.md.tmp" "$out.md"
cat "$out.md"
