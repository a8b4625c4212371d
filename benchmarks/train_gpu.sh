#!/usr/bin/env bash
# The teacher, the FAN student and the PMRID-architecture baseline on one CUDA GPU inside a
# fixed time budget (issue 19's GPU lever):
#   stage A (A seconds): the teacher and the student's Charbonnier pretraining, side by side
#   stage B (B seconds): the student, KD + Feature Matching from the new teacher
#   all along (A + B seconds): the PMRID-architecture baseline (Charbonnier), the peer trained
#     by the same pipeline on the same data, beside them
# What makes a GPU minute count here: batches made on the GPU (data.synthesis=device: crops,
# Bayer flips and noise for a whole batch in a few kernels, instead of NumPy per image in
# worker processes, the last run's bottleneck), channels-last convolutions, batches of BATCH.
# The read noise is sampled READ_BAND ln-units around UPI's line (2.3: 0.1x-10x, issue 19), and
# each image's loss is relative to its noise (WEIGHTING), so the high-noise images count.
# A probe first runs each kind of run for 3*PROBE steps, all side by side, and times steps
# PROBE..3*PROBE; each run then gets the steps that fit its seconds, so every model card holds
# a plain fad-train command that re-runs anywhere. Models go to $MODELS (not the shipped
# ones: benchmarks/noise_grid.py compares them first); run folders to $RUNS.
# FAN=OVERRIDES trains the student in another configuration (issue 18's chosen one; fad-train's
# model.config settings, printed by `python benchmarks/fan_config_search.py --overrides KEY`), and
# TEACHER=CHECKPOINT distils from that teacher instead of training one (stage A then trains the
# student's pretraining and the PMRID baseline only).
# Usage: benchmarks/train_gpu.sh     (needs `fad-data fetch` photos; a dry run on the CPU:
#   DEVICE=cpu BATCH=4 PROBE=2 A=20 B=20 RUNS=/tmp/g MODELS=/tmp/g/models benchmarks/train_gpu.sh)
# e.g. the chosen configuration from the shipped teacher:
#   FAN="$(python benchmarks/fan_config_search.py --overrides d8-12-24)" TEACHER=models/teacher.pt \
#     benchmarks/train_gpu.sh
# The earlier run of this script (numpy batches in 5 workers, batch 64, no PMRID) is
# benchmarks/results/train_gpu.log; this one's is benchmarks/results/train_gpu_device.log.
set -euo pipefail
A=${A:-200}
B=${B:-170}
BATCH=${BATCH:-128}
READ_BAND=${READ_BAND:-2.3}
WEIGHTING=${WEIGHTING:-relative}  # loss.level_weighting: every noise level counts alike
PROBE=${PROBE:-100}  # 20 timed steps overlapping the other probes' start-up, 1.3-2x too fast (train_gpu_device.log)
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-runs/gpu}
MODELS=${MODELS:-models/gpu}
FAN=${FAN:-}
TEACHER=${TEACHER:-}
ON="data.batch=$BATCH data.synthesis=device data.read_band=$READ_BAND loss.level_weighting=$WEIGHTING
  --device $DEVICE --channels-last"
PRETRAIN=$MODELS/fan-pretrain.pt
STUDENT_FT="schedule.lr=0.0005 schedule.warmup=20"  # train_all.sh's fine-tune from a pretrained student
mkdir -p "$RUNS" "$MODELS"

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
steps_in() {  # SECONDS SECONDS_PER_STEP: whole steps that fit, in multiples of 10
  python -c "print(max(10, int($1 / $2 / 10) * 10))"
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

[ -z "$TEACHER" ] && probe teacher teacher >"$RUNS/t.s" &
# shellcheck disable=SC2086  # FAN holds several settings on purpose
probe pretrain charbonnier $FAN >"$RUNS/p.s" &
# shellcheck disable=SC2086
probe student fan-student $FAN >"$RUNS/s.s" &
probe pmrid charbonnier model.arch=pmrid >"$RUNS/m.s" &
wait
P=$(cat "$RUNS/p.s") S=$(cat "$RUNS/s.s") M=$(cat "$RUNS/m.s")
if [ -n "$TEACHER" ]; then T="not trained ($TEACHER)"; else T=$(cat "$RUNS/t.s"); fi
echo "seconds per step of $BATCH side by side: teacher $T, pretraining $P, student $S, pmrid $M"

# shellcheck disable=SC2086
run $((A + B)) pmrid "$MODELS/pmrid.pt" charbonnier name=pmrid model.arch=pmrid \
  schedule.steps="$(steps_in $((A + B)) "$M")" out="$RUNS/pmrid" $ON &
PEER=$!
STAGE_A=()
if [ -z "$TEACHER" ]; then
  TEACHER=$MODELS/teacher.pt
  # shellcheck disable=SC2086
  run "$A" teacher "$TEACHER" teacher schedule.steps="$(steps_in "$A" "$T")" out="$RUNS/teacher" $ON --half &
  STAGE_A+=($!)
fi
# shellcheck disable=SC2086
run "$A" fan-pretrain "$PRETRAIN" charbonnier name=fan-pretrain schedule.steps="$(steps_in "$A" "$P")" \
  out="$RUNS/fan-pretrain" $FAN $ON &
STAGE_A+=($!)
wait "${STAGE_A[@]}"  # the PMRID run goes on
# shellcheck disable=SC2086
run "$B" fan-student "$MODELS/fan-student.pt" fan-student model.init="$PRETRAIN" loss.teacher="$TEACHER" \
  $STUDENT_FT schedule.steps="$(steps_in "$B" "$S")" out="$RUNS/fan-student" $FAN $ON
wait $PEER
ls "$MODELS"
