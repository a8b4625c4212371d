#!/usr/bin/env bash
# Issue 18: does a latency-chosen configuration's quality gap close with more training? Today's
# configuration and KEY (a fan_config_search.py candidate), each from its 9,600-step checkpoint of
# fan_config_quality.py --steps 9600 with seed SEED, get a second cycle: 9,600 more steps at a third
# of the learning rate, the same seed (so the same data order for both). All four networks are then
# measured on fan_config_quality.py's held-out set (quality.py's Table 1 set, fad-eval).
# Writes models/ablations/fan-{today,KEY}-charbonnier-steps9600-c2[-seedN].pt with their cards (.md, .json)
# and benchmarks/results/second_cycle-KEY[-seedN].{md,json}.
# Usage: KEY=d8-12-24 SEED=1 benchmarks/second_cycle.sh   (two trainings side by side, one thread
#   each: ~40 min on 2 cores of an AVX-512 EPYC; re-running skips the networks already trained)
set -euo pipefail
KEY=${KEY:-d8-12-24}
SEED=${SEED:-1}
STEPS=9600
LR=0.0007  # the first cycle's 0.002 over three
MODELS=models/ablations
SUFFIX=$([ "$SEED" = 0 ] && echo "" || echo "-seed$SEED")
SEEDED=$([ "$SEED" = 0 ] && echo "" || echo "seed=$SEED")
first() { echo "fan-$1-charbonnier-steps$STEPS$SUFFIX"; }
second() { echo "fan-$1-charbonnier-steps$STEPS-c2$SUFFIX"; }
cycle() {  # cycle KEY SETTINGS...: the second cycle from KEY's first
  local key=$1
  shift
  [ -f "$MODELS/$(second "$key").pt" ] && return
  # shellcheck disable=SC2086  # SEEDED is one setting or none
  fad-train charbonnier name="$(second "$key")" model.init="$MODELS/$(first "$key").pt" "$@" \
    schedule.steps=$STEPS schedule.lr=$LR $SEEDED --threads 1 --ship "$MODELS/$(second "$key").pt" </dev/null
}
for key in today "$KEY"; do
  [ -f "$MODELS/$(first "$key").pt" ] || { echo "second_cycle: no $MODELS/$(first "$key").pt (run" \
    "benchmarks/fan_config_quality.py --candidates today $KEY --seeds $SEED --steps $STEPS)" >&2; exit 1; }
done
mkdir -p runs
cycle today > "runs/second_cycle-today$SUFFIX.log" 2>&1 &
today=$!
# shellcheck disable=SC2046  # the candidate's settings, one word each
cycle "$KEY" $(python benchmarks/fan_config_search.py --overrides "$KEY") > "runs/second_cycle-$KEY$SUFFIX.log" 2>&1 &
candidate=$!
wait $today
wait $candidate
OUT="benchmarks/results/second_cycle-$KEY$SUFFIX"
models=()
for key in today "$KEY"; do models+=("$MODELS/$(first "$key").pt" "$MODELS/$(second "$key").pt"); done
{
  echo "# A second training cycle: today's configuration against $KEY (seed $SEED)"
  echo
  echo "Made by \`KEY=$KEY SEED=$SEED benchmarks/second_cycle.sh\` on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "Each network's first cycle is fan_config_quality.py's $STEPS-step run; its second cycle starts from it:"
  echo "$STEPS more steps at learning rate $LR, seed $SEED (the commands are in the cards). Held-out set: fan_config_quality.py's."
  echo
  echo '```'
  fad-eval --images "$(python -c 'from fad_deploy.data.photos import default_cache_dir; print(default_cache_dir())')/photos/test" \
    "${models[@]}" --crops-per-image 2 --levels 6 --threads 2 --json "$OUT.json"
  echo '```'
} > "$OUT.md"
python - "$OUT.json" "$(second today)" "$(second "$KEY")" "KEY=$KEY SEED=$SEED benchmarks/second_cycle.sh" <<'EOF'
import json
import sys

sys.path.insert(0, "benchmarks")
from quality import add_params, write_model_cards  # noqa: E402

out, *names, command = sys.argv[1:]
result = json.loads(open(out).read())
add_params(result["results"], names)
write_model_cards(result["results"], result["set"], only=names, measured_by=command)
EOF
cat "$OUT.md"
