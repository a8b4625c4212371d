#!/usr/bin/env bash
# Issue 18's "Then" on the CPU: the shipped student and noise-subrange array re-made in the
# configuration chosen for speed (KEY, a fan_config_search.py candidate; d8-12-24) without
# training from scratch, which the GPU student's schedule would take 10+ CPU hours to match.
#   stage 1: the shipped student cut to KEY's ARNet widths (fad-train model.narrow: each block keeps
#            the groups that carry most of its output, its projection refitted by least squares),
#            then fine-tuned with Charbonnier + distillation from the shipped student itself, the
#            noise-relative loss, the best validation kept: $MODELS/fan-student-KEY.pt; then a second
#            cycle of 8,000 steps at a third of the learning rate: $MODELS/fan-student-KEY-c2.pt
#   stage 2: the array from that student with the shipped array's recipe (nsma_from_student.sh:
#            train_nsma.sh, KD + Feature Matching from the teacher per sub-range, two at a time),
#            its manifest, cards and per-sub-range table (benchmarks/results/nsma-KEY/)
#   stage 3: both against the shipped ones at every noise level, read noise 0.1x-10x
#            (noise_grid.py: benchmarks/results/noise_grid_KEY.md; the shipped array's rows, same crops
#            and seed: noise_grid_nsma_from_student.md)
# Run folders: runs/fan-student-KEY, runs/nsma-KEY. Re-running resumes each fine-tune from its run
# folder and skips the models already made. The int8 array (nsma_from_student_int8.sh, ~8 h) is the
# next step; until then nothing here is shipped.
# Usage: nohup benchmarks/narrow_to_config.sh > narrow.log 2>&1 &   (2 cores, AVX2: stage 1 ~STEPS/175
#   + 45 min, stage 2 ~90 min (1.3 s a step per model, two side by side; 43 min on an AVX-512 EPYC), stage 3
#   ~4 min)
set -euo pipefail
KEY=${KEY:-d8-12-24}
STEPS=${STEPS:-14000}
MODELS=${MODELS:-models/ablations}
FAN=$(python benchmarks/fan_config_search.py --overrides "$KEY")
ARRAY="$MODELS/nsma-$KEY"
finetune() {  # finetune NAME LR STEPS SETTINGS...: Charbonnier + distillation from the shipped student
  local name=$1 lr=$2 steps=$3
  shift 3
  [ -f "$MODELS/$name.pt" ] && return
  # shellcheck disable=SC2086  # FAN holds several settings on purpose
  fad-train charbonnier name="$name" "$@" $FAN loss.distillation=1.0 loss.teacher=models/fan-student.pt \
    loss.level_weighting=relative schedule.lr="$lr" schedule.steps="$steps" schedule.warmup=20 \
    schedule.keep_best=true --threads 2 --ship "$MODELS/$name.pt" </dev/null
}
finetune "fan-student-$KEY" 0.0003 "$STEPS" model.init=models/fan-student.pt model.narrow=true
finetune "fan-student-$KEY-c2" 0.0001 8000 model.init="$MODELS/fan-student-$KEY.pt"  # a second cycle
STUDENT="$MODELS/fan-student-$KEY-c2.pt"
export STUDENT ARRAY RUNS="runs/nsma-$KEY" STEPS=2000 VAL_EVERY=500 THREADS=1 TABLE=no \
  EXTRA="loss.level_weighting=relative $FAN --channels-last"  # settings before the options
ONLY="0 2" benchmarks/train_nsma.sh &
pid=$!
ONLY="1 3" benchmarks/train_nsma.sh
wait "$pid"
python benchmarks/nsma_table.py --array "$ARRAY" --single "$STUDENT" --results "benchmarks/results/nsma-$KEY" \
  --write-manifest --cards
python benchmarks/noise_grid.py --models models/fan-student.pt "$STUDENT" --baselines --array "$ARRAY" \
  --name "noise_grid_$KEY"
