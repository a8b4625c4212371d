#!/usr/bin/env bash
# Trains every shipped and comparison model, in two lanes that share a 2-core CPU
# (one torch thread each). Re-running resumes each run from runs/<name>/last.pt.
#   lane a: teacher -> fan-student (KD + Feature Matching) -> Table 3 fine-tunes
#   lane b: Charbonnier-only networks for Tables 1 and 5 (same 2400-step schedule)
# Usage: benchmarks/train_all.sh a|b    (needs `fad-data fetch` photos first)
set -euo pipefail
STEPS=2400       # from-scratch schedule of every student-sized network
FINETUNE=800     # distillation / Table 3 fine-tunes, starting from fan-charbonnier
T="--threads 1"
case "${1:-}" in
  a)
    fad-train teacher schedule.steps=$STEPS $T --ship models/teacher.pt --half
    while [ ! -f models/ablations/fan-charbonnier.pt ]; do sleep 30; done
    fad-train fan-student schedule.steps=$FINETUNE model.init=models/ablations/fan-charbonnier.pt \
      schedule.lr=0.0005 schedule.warmup=20 $T --ship models/fan-student.pt
    fad-train fan-kd schedule.steps=$FINETUNE model.init=models/ablations/fan-charbonnier.pt \
      schedule.lr=0.0005 schedule.warmup=20 $T --ship models/ablations/fan-kd.pt
    ;;
  b)
    fad-train charbonnier schedule.steps=$STEPS $T --ship models/ablations/fan-charbonnier.pt
    fad-train charbonnier name=unet-plain model.arch=unet-plain schedule.steps=$STEPS $T --ship models/unet-plain.pt
    fad-train charbonnier name=upi-lite model.arch=upi-lite schedule.steps=$STEPS $T --ship models/ablations/upi-lite.pt
    fad-train charbonnier name=unet-wavelet model.arch=unet-wavelet schedule.steps=$STEPS $T \
      --ship models/ablations/unet-wavelet.pt
    fad-train charbonnier name=fan-noskip model.arch=fan-noskip schedule.steps=$STEPS $T \
      --ship models/ablations/fan-noskip.pt
    # Table 3's Charbonnier row: the same extra fine-tuning steps as fan-student, Charbonnier only.
    fad-train charbonnier name=fan-charbonnier-ft schedule.steps=$FINETUNE \
      model.init=models/ablations/fan-charbonnier.pt schedule.lr=0.0005 schedule.warmup=20 $T \
      --ship models/ablations/fan-charbonnier-ft.pt
    ;;
  *) echo "usage: $0 a|b" >&2; exit 2 ;;
esac
