#!/usr/bin/env bash
# Issue 18's "Then" on the CPU: the shipped student and noise-subrange array re-made in the
# configuration chosen for speed (KEY, a fan_config_search.py candidate; d8-12-24) without
# training from scratch, which the GPU student's schedule would take 10+ CPU hours to match.
#   stage 1: the shipped student cut to KEY's ARNet widths (fad-train model.narrow: each block keeps
#            the groups that carry most of its output, its projection refitted by least squares),
#            then fine-tuned with Charbonnier + distillation from the shipped student itself, the
#            noise-relative loss, the best validation kept: $MODELS/fan-student-KEY.pt
#   stage 2: the array from that student with the shipped array's recipe (nsma_from_student.sh:
#            train_nsma.sh, KD + Feature Matching from the teacher per sub-range, two at a time)
#   stage 3: both against the shipped ones at every noise level, read noise 0.1x-10x
#            (noise_grid.py: benchmarks/results/noise_grid_KEY.md; the shipped array's rows, same crops
#            and seed: noise_grid_nsma_from_student.md)
# Run folders: runs/fan-student-KEY, runs/nsma-KEY. Re-running resumes each fine-tune from its run
# folder and skips the models already made. The int8 array (nsma_from_student_int8.sh, ~8 h) is the
# next step; until then nothing here is shipped.
# Usage: nohup benchmarks/narrow_to_config.sh > narrow.log 2>&1 &   (2 cores, AVX2: stage 1 ~STEPS/175
#   min, stage 2 ~90 min (1.3 s a step per model, two side by side), stage 3 ~2 min)
set -euo pipefail
KEY=${KEY:-d8-12-24}
STEPS=${STEPS:-14000}
MODELS=${MODELS:-models/ablations}
FAN=$(python benchmarks/fan_config_search.py --overrides "$KEY")
STUDENT="$MODELS/fan-student-$KEY.pt"
ARRAY="$MODELS/nsma-$KEY"
if [ ! -f "$STUDENT" ]; then
  # shellcheck disable=SC2086  # FAN holds several settings on purpose
  fad-train charbonnier name="fan-student-$KEY" model.init=models/fan-student.pt \
    model.narrow=true $FAN loss.distillation=1.0 loss.teacher=models/fan-student.pt loss.level_weighting=relative \
    schedule.lr=0.0003 schedule.steps="$STEPS" schedule.warmup=20 schedule.keep_best=true --threads 2 \
    --ship "$STUDENT" </dev/null
fi
export STUDENT ARRAY RUNS="runs/nsma-$KEY" STEPS=2000 VAL_EVERY=500 THREADS=1 TABLE=no \
  EXTRA="loss.level_weighting=relative $FAN --channels-last"  # settings before the options
ONLY="0 2" benchmarks/train_nsma.sh &
pid=$!
ONLY="1 3" benchmarks/train_nsma.sh
wait "$pid"
python benchmarks/noise_grid.py --models models/fan-student.pt "$STUDENT" --baselines --array "$ARRAY" \
  --name "noise_grid_$KEY"
