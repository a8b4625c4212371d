#!/usr/bin/env bash
# Issue 19's capacity lever at equal training: FAN as shipped, FAN with a 384-channel lowest
# level (the cheapest place for parameters: 1/1024 of the RAW pixels; 2.67 GMACs/MP, 378 k
# parameters), and the PMRID architecture (1.03 M parameters, 3.96 GMACs/MP), each trained
# from scratch on the Table 1 schedule (fad-train charbonnier, 2400 steps of 16) with the
# noise-relative loss, then compared at every noise level, on and off the read-noise line
# (benchmarks/noise_grid.py -> benchmarks/results/noise_grid_capacity.md, and their cards).
# Usage: benchmarks/capacity.sh   (about 35 min on 2 CPU cores; shipped models are not retrained)
set -euo pipefail
THREADS=${THREADS:-2}
RUNS=${RUNS:-runs}
declare -A OVERRIDES=(
  [fan-today-rel]=""
  [fan-w384-rel]="model.config.widths=[16,24,48,96,384]"
  [pmrid-rel]="model.arch=pmrid"
)
NAMES=(fan-today-rel fan-w384-rel pmrid-rel)
for name in "${NAMES[@]}"; do
  [ -f "models/ablations/$name.pt" ] && continue
  # shellcheck disable=SC2086  # an override list, empty for the shipped configuration
  fad-train charbonnier name="$name" schedule.steps=2400 loss.level_weighting=relative ${OVERRIDES[$name]} \
    out="$RUNS/$name" --threads "$THREADS" --ship "models/ablations/$name.pt"
done
python benchmarks/noise_grid.py --models fan-student "${NAMES[@]}" --baselines --threads "$THREADS" \
  --name noise_grid_capacity --cards "${NAMES[@]}"
