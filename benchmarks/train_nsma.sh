#!/usr/bin/env bash
# Noise Subrange Model Array (paper section 3.3, Table 2): one FAN student per log-uniform
# sub-range of the shot noise a (equations 5, 6), each fine-tuned from the full-range
# student with the shipped student's losses (preset fan-student: Charbonnier + distillation
# + Feature Matching from the teacher) on noise restricted to its sub-range (data.shot_range;
# the checkpoint records it), validated on its own sub-range: each ships the weights with the best
# validation PSNR, the student's own included (schedule.keep_best), so a fine-tune that did not
# help is not shipped. Each model keeps the student's k-sigma anchor, so fine-tuning
# starts from the input scale the student learned; each gets its own int8 input range at export.
# Ships $ARRAY/fan-nsma-{0..N-1}.pt, then evaluates array vs single student and writes
# $ARRAY/manifest.json (sub-range table, checkpoints, metrics per sub-range) and
# $RESULTS/nsma.{md,json,png}.
#
# Usage: benchmarks/train_nsma.sh      (after benchmarks/train_all.sh shipped the student and teacher)
# Re-running resumes each run from $RUNS/fan-nsma-<i>/last.pt and skips shipped models
# (delete $ARRAY to retrain); ONLY="0 2" and ONLY="1 3" in two shells train two at a time, and
# the run that finds all N models shipped writes the table. Settings come from the environment,
# e.g. a dry run:
#   STUDENT=/tmp/s.pt TEACHER=/tmp/t.pt ARRAY=/tmp/nsma RUNS=/tmp/runs RESULTS=/tmp/res STEPS=2 \
#     EXTRA="data.batch=2" EVAL_ARGS="--crops-per-image 1 --levels-per-subrange 1" benchmarks/train_nsma.sh
set -euo pipefail
STUDENT=${STUDENT:-models/fan-student.pt}   # full-range student to start from (and compare with)
TEACHER=${TEACHER:-models/teacher.pt}
ARRAY=${ARRAY:-models/nsma}    # where the array goes (not OUT, which job runners such as GPU leases set)
RUNS=${RUNS:-runs}
RESULTS=${RESULTS:-benchmarks/results}
N=${N:-4}                 # models in the array (the paper's n = 4)
STEPS=${STEPS:-400}       # fine-tuning schedule per sub-range model
UNTIL=${UNTIL:-}          # stop each fine-tune after this step (fad-train --until)
LR=${LR:-0.0002}          # below the student's own fine-tune (5e-4): these start from a converged model
VAL_EVERY=${VAL_EVERY:-100}
WARMUP=${WARMUP:-20}
THREADS=${THREADS:-1}
EXTRA=${EXTRA:-}          # more fad-train overrides (key.sub=value ...) and options (--device cuda)
EVAL_ARGS=${EVAL_ARGS:-}  # more benchmarks/nsma_table.py options
ONLY=${ONLY:-}            # train only these sub-range indices (e.g. "0 2" here, "1 3" in a second shell)
TABLE=${TABLE:-yes}       # no: train only (e.g. on a GPU machine; evaluate where you run the benchmarks)
for f in "$STUDENT" "$TEACHER"; do
  [ -f "$f" ] || { echo "$0: $f not found: train the student and teacher first (train_all.sh a)" >&2; exit 2; }
done
mkdir -p "$ARRAY"
ANCHOR=$(python -c "from fad_deploy.models.registry import load_checkpoint as l; print(repr(l('$STUDENT').anchor.shot))")
python -c "from fad_deploy.nsma.partition import subranges
for i, (lo, hi) in enumerate(subranges($N)): print(i, repr(lo), repr(hi))" |
while read -r i lo hi; do
  if [ -f "$ARRAY/fan-nsma-$i.pt" ]; then echo "fan-nsma-$i: already in $ARRAY"; continue; fi
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $i "* ]]; then continue; fi
  # shellcheck disable=SC2086  # EXTRA holds several words on purpose
  fad-train fan-student name="fan-nsma-$i" out="$RUNS/fan-nsma-$i" model.init="$STUDENT" loss.teacher="$TEACHER" \
    "data.shot_range=[$lo, $hi]" "data.anchor_shot=$ANCHOR" schedule.steps="$STEPS" schedule.lr="$LR" \
    schedule.warmup="$WARMUP" schedule.val_every="$VAL_EVERY" schedule.keep_best=true $EXTRA \
    --threads "$THREADS" ${UNTIL:+--until "$UNTIL"} --ship "$ARRAY/fan-nsma-$i.pt" </dev/null
done
[ "$TABLE" = no ] && exit 0
for i in $(seq 0 $((N - 1))); do
  [ -f "$ARRAY/fan-nsma-$i.pt" ] || { echo "fan-nsma-$i not trained yet: the table waits for all $N models"; exit 0; }
done
# shellcheck disable=SC2086
python benchmarks/nsma_table.py --array "$ARRAY" --single "$STUDENT" --results "$RESULTS" --write-manifest $EVAL_ARGS
