#!/usr/bin/env bash
# The shipped chain of train_all.sh lane a, on one CUDA GPU inside a fixed time budget:
#   stage A (A seconds): the teacher and the student's Charbonnier pretraining, side by side
#   stage B (B seconds): the student, KD + Feature Matching from the new teacher
#   stage C (C seconds): the noise-subrange array (train_nsma.sh), its N fine-tunes side by side
# A probe first runs each kind of run for 3*PROBE steps, all side by side, and times steps
# PROBE..3*PROBE; each stage then gets the steps that fit its seconds, so every model card holds
# a plain fad-train command that re-runs anywhere. Batches are 4x the CPU presets' (BATCH) at the
# presets' learning rates; worker processes make them (WORKERS per run).
# Writes models/teacher.pt, models/ablations/fan-pretrain-gpu.pt,
# models/ablations/fan-student-gpu.pt and models/nsma/fan-nsma-*.pt (fine-tuned from
# fan-student-gpu), run folders under $RUNS; then benchmarks/finetune_student.sh makes the
# shipped student from fan-student-gpu on the CPU (evaluate with benchmarks/quality.py and
# benchmarks/nsma_table.py). The shipped run wrote the GPU student as models/fan-student.pt,
# renamed since (its card says so).
# Usage: benchmarks/train_gpu.sh     (needs `fad-data fetch` photos; a dry run on the CPU:
#   DEVICE=cpu BATCH=2 PROBE=2 A=20 B=20 C=10 WORKERS=1 RUNS=/tmp/g benchmarks/train_gpu.sh)
# The defaults should end in about 8.5 minutes on an H200 (each run also spends ~20 s starting;
# estimated from the shipped run). The shipped models: A=220 B=160 on an H200, where a 570 s
# limit around the script cut stage C; it was re-run alone as STEPS=1000 VAL_EVERY=250
# EXTRA="data.batch=64 --device cuda --workers 3" train_nsma.sh, four side by side (their
# cards hold the exact commands).
set -euo pipefail
A=${A:-190}
B=${B:-140}
C=${C:-45}
BATCH=${BATCH:-64}
WORKERS=${WORKERS:-5}
PROBE=${PROBE:-20}
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-runs/gpu}
N=${N:-4}
ON="data.batch=$BATCH --device $DEVICE --workers $WORKERS"
PRETRAIN=models/ablations/fan-pretrain-gpu.pt
STUDENT=models/ablations/fan-student-gpu.pt
STUDENT_FT="schedule.lr=0.0005 schedule.warmup=20"  # train_all.sh's fine-tune from a pretrained student
mkdir -p "$RUNS"

# The patch cache, once, before runs side by side would each build it.
python -c "from fad_deploy.train.config import load_config as c; from fad_deploy.train.trainer import resolve_cache as r
print('patch cache:', r(c('teacher')))"

probe() {  # NAME PRESET OVERRIDES...: prints seconds per training step
  local name=$1
  shift
  # shellcheck disable=SC2086  # ON holds several words on purpose
  fad-train "$@" out="$RUNS/probe-$name" schedule.steps=1000000 schedule.val_every="$PROBE" $ON \
    --until $((3 * PROBE)) --fresh >"$RUNS/probe-$name.log" 2>&1
  python -c "import csv; r = list(csv.DictReader(open('$RUNS/probe-$name/log.csv')))
print(round((float(r[-1]['time_s']) - float(r[0]['time_s'])) / (int(r[-1]['step']) - int(r[0]['step'])), 5))"
}
steps_in() {  # SECONDS SECONDS_PER_STEP [SLOWDOWN]: whole steps that fit, in multiples of 10
  python -c "print(max(10, int($1 / ($2 * ${3:-1}) / 10) * 10))"
}
run() {  # SECONDS NAME SHIP ARGS...: fad-train ARGS --ship SHIP, stopped after 1.5x its seconds + 60
  # if it overruns; then its last validated weights (out=$RUNS/NAME) are shipped, so the next stage can go on
  local seconds=$1 name=$2 ship=$3
  shift 3
  echo "$name: fad-train $* --ship $ship"
  if timeout $((seconds * 3 / 2 + 60)) fad-train "$@" --ship "$ship" >"$RUNS/$name.log" 2>&1 </dev/null; then
    tail -n 1 "$RUNS/$name.log"
  else
    echo "$name: stopped early, shipping its last validated weights (see $RUNS/$name.log)"
    cp "$RUNS/$name/model.pt" "$ship"
  fi
}

probe teacher teacher >"$RUNS/t.s" &
probe pretrain charbonnier >"$RUNS/p.s" &
probe student fan-student >"$RUNS/s.s" &
wait
T=$(cat "$RUNS/t.s") P=$(cat "$RUNS/p.s") S=$(cat "$RUNS/s.s")
echo "seconds per step with three runs side by side: teacher $T, pretraining $P, student $S"

# shellcheck disable=SC2086
run "$A" teacher models/teacher.pt teacher schedule.steps="$(steps_in "$A" "$T")" out="$RUNS/teacher" $ON \
  --half &
# shellcheck disable=SC2086
run "$A" fan-pretrain-gpu "$PRETRAIN" charbonnier name=fan-pretrain-gpu schedule.steps="$(steps_in "$A" "$P")" \
  out="$RUNS/fan-pretrain-gpu" $ON &
wait

# shellcheck disable=SC2086
run "$B" fan-student-gpu "$STUDENT" fan-student name=fan-student-gpu model.init="$PRETRAIN" $STUDENT_FT \
  schedule.steps="$(steps_in "$B" "$S")" out="$RUNS/fan-student-gpu" $ON

# Each of the N fine-tunes shares the GPU with N-1 others (the probe shared it with 2).
STEPS=$(steps_in "$C" "$S" "$N / 3")
rm -f models/nsma/fan-nsma-*.pt
for i in $(seq 0 $((N - 1))); do
  STUDENT=$STUDENT ONLY=$i STEPS=$STEPS VAL_EVERY=$((STEPS / 4)) RUNS=$RUNS TABLE=no EXTRA="$ON" THREADS=1 \
    benchmarks/train_nsma.sh >"$RUNS/fan-nsma-$i.sh.log" 2>&1 &
done
wait
ls models/nsma/fan-nsma-*.pt
