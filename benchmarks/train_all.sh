#!/usr/bin/env bash
# Trains every shipped and comparison model, in two lanes that share a 2-core CPU
# (one torch thread each). Re-running resumes each run from runs/<name>/last.pt.
#   lane a: teacher -> fan-kd-fm (Table 3) -> fan-student (KD + Feature Matching, longer) -> noise-subrange array
#   lane b: Charbonnier-only networks for Tables 1, 3 and 5 (same schedule as fan-charbonnier), fan-kd
# Usage: benchmarks/train_all.sh a|b    (needs `fad-data fetch` photos first)
# The shipped teacher and noise-subrange array come from benchmarks/train_gpu.sh (the same
# presets, 4x the batch, minutes on one GPU), the shipped student from its GPU student with
# benchmarks/finetune_student.sh; lane a is their CPU route (shipped before, see git history).
# The Table 3 fine-tunes (fan-kd, fan-kd-fm) distil from whichever teacher models/teacher.pt
# holds: the shipped ones from the GPU teacher, each run alone with --threads 2 (their cards
# hold the exact commands).
set -euo pipefail
STEPS=2400       # from-scratch schedule of every student-sized network
FINETUNE=600     # distillation / Table 3 fine-tunes, starting from fan-charbonnier
STUDENT_FINETUNE=8000  # the shipped student: the same fine-tune as fan-kd-fm, 13x longer
T="--threads 1"
FROM_FAN="model.init=models/ablations/fan-charbonnier.pt schedule.lr=0.0005 schedule.warmup=20"
FT="$FROM_FAN schedule.steps=$FINETUNE"
case "${1:-}" in
  a)
    fad-train teacher schedule.steps=$STEPS $T --ship models/teacher.pt --half
    while [ ! -f models/ablations/fan-charbonnier.pt ]; do sleep 30; done
    fad-train fan-student name=fan-kd-fm $FT $T --ship models/ablations/fan-kd-fm.pt
    fad-train fan-student $FROM_FAN schedule.steps=$STUDENT_FINETUNE $T --ship models/fan-student.pt
    benchmarks/train_nsma.sh
    ;;
  b)
    fad-train charbonnier schedule.steps=$STEPS $T --ship models/ablations/fan-charbonnier.pt
    fad-train charbonnier name=unet-plain model.arch=unet-plain schedule.steps=$STEPS $T --ship models/unet-plain.pt
    # Table 3's Charbonnier row: the same fine-tuning steps as fan-kd-fm, Charbonnier only.
    fad-train charbonnier name=fan-charbonnier-ft $FT $T --ship models/ablations/fan-charbonnier-ft.pt
    fad-train charbonnier name=upi-lite model.arch=upi-lite schedule.steps=$STEPS $T --ship models/ablations/upi-lite.pt
    fad-train charbonnier name=cycleisp-lite model.arch=cycleisp-lite schedule.steps=$STEPS $T \
      --ship models/ablations/cycleisp-lite.pt
    while [ ! -f models/teacher.pt ]; do sleep 30; done
    fad-train fan-kd $FT $T --ship models/ablations/fan-kd.pt
    fad-train charbonnier name=unet-wavelet model.arch=unet-wavelet schedule.steps=$STEPS $T \
      --ship models/ablations/unet-wavelet.pt
    fad-train charbonnier name=fan-noskip model.arch=fan-noskip schedule.steps=$STEPS $T \
      --ship models/ablations/fan-noskip.pt
    ;;
  *) echo "usage: $0 a|b" >&2; exit 2 ;;
esac
