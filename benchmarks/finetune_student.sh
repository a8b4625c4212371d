#!/usr/bin/env bash
# The shipped student: the GPU student (train_gpu.sh, models/ablations/fan-student-gpu.pt)
# fine-tuned further on the CPU with the noise-relative loss (loss.level_weighting=relative:
# each image's errors relative to its own noise std, so every noise level counts alike, as
# in a mean PSNR over levels; the anchor-space loss lets low-noise images dominate).
#   stage 1: two equal fine-tunes side by side (one thread each), anchor-space vs
#            noise-relative loss: the comparison in quality.md's loss-weighting table
#   stage 2: the noise-relative fine-tune goes on (both threads): fan-student-cpu-kd
#   stage 3: Charbonnier alone (noise-relative), 2.3x the steps per CPU second of distillation
#            + Feature Matching (the cards' training times), which made no difference at equal
#            steps (quality.md Table 3): models/fan-student.pt
# Every run ships its best validated weights, its start included (schedule.keep_best).
# Usage: benchmarks/finetune_student.sh    (on 2 cores: stage 1 ~40 min, stage 2 ~STEPS/80 min,
# stage 3 ~STEPS3/180 min; re-running resumes each run from runs/<name>/last.pt; then
# benchmarks/quality.py)
set -euo pipefail
STEPS=${STEPS:-4000}    # stage 2
STEPS3=${STEPS3:-15000} # stage 3
mkdir -p runs
FT="schedule.warmup=20 schedule.keep_best=true"
PIDS=()
START="model.init=models/ablations/fan-student-gpu.pt schedule.lr=0.0003 schedule.steps=2400 $FT"
for w in anchor relative; do
  # shellcheck disable=SC2086  # START holds several settings on purpose
  fad-train fan-student name="fan-student-ft-$w" $START loss.level_weighting=$w --threads 1 \
    --ship "models/ablations/fan-student-ft-$w.pt" >"runs/fan-student-ft-$w.log" 2>&1 </dev/null &
  PIDS+=($!)
done
for pid in "${PIDS[@]}"; do wait "$pid"; done  # a failed run stops the script here
# shellcheck disable=SC2086
fad-train fan-student name=fan-student-cpu-kd model.init=models/ablations/fan-student-ft-relative.pt \
  schedule.lr=0.0001 schedule.steps="$STEPS" $FT loss.level_weighting=relative --threads 2 \
  --ship models/ablations/fan-student-cpu-kd.pt
# shellcheck disable=SC2086
fad-train charbonnier name=fan-student model.init=models/ablations/fan-student-cpu-kd.pt schedule.lr=0.0003 \
  schedule.steps="$STEPS3" $FT loss.level_weighting=relative --threads 2 --ship models/fan-student.pt
