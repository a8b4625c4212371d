#!/usr/bin/env bash
# The int8 QAT of the array re-made from the shipped student (nsma_from_student.sh), each model
# with the recipe its twin in the array shipped before was made with
# (models/ablations/nsma-gpu/<model>.int8.md): fan-nsma-0 the
# square-root input (20000 float steps of adaptation, 14400 QAT steps, two more cycles of 9600),
# fan-nsma-1 and -2 the recipe's 28800 steps and two more cycles, fan-nsma-3 one more cycle; each
# row measured with its int8 input split (k = 8) as shipped. Rows go breadth first (every model's
# first cycle before any later one), two queues side by side, one thread each (qat_jobs.md: 2.1x
# one process on both cores). int8_recipe.py keeps each QAT and resumes an interrupted one: run
# this again after a stop and it goes on. Results: benchmarks/results/nsma_from_student/int8_recipe.md.
# It ran on models/ablations/nsma-from-student; benchmarks/ship_int8.py --array has since made that
# array the shipped one (models/nsma/, the same weights), so it now runs on models/nsma/ and finds
# the kept QATs (keyed by the weights).
# Usage: nohup benchmarks/nsma_from_student_int8.sh > nsma_from_student_int8.log 2>&1 &   (~8 h on 2 cores)
set -euo pipefail
recipe() {  # recipe MODEL VARIANT...
  local model=$1
  shift
  python benchmarks/int8_recipe.py --results benchmarks/results/nsma_from_student --threads 1 --models "$model" \
    --variants "$@"
}
FIRST=("+ 28800 steps, 3x" "+ the int8 input split in two (k = 8: the input to 1/8 of a step; the recipe)")
SECOND=("the recipe + a second cycle of 9600 steps (lr 0.0005, ranges learned again)"
  "the recipe + a second cycle, its int8 input split in two (k = 8)")
THIRD=("the recipe + a third cycle of 9600 steps" "the recipe + a third cycle, its int8 input split in two (k = 8)")
FOURTH=("the recipe + a fourth cycle of 9600 steps" "the recipe + a fourth cycle, its int8 input split in two (k = 8)")
SQRT=("that square-root input and adaptation, 14400 steps"
  "the 14400-step square-root row + a second cycle of 9600 steps" "that row + a third cycle of 9600 steps"
  "the square-root row + a third cycle, its int8 input split in two (k = 8)")
{
  recipe fan-nsma-1 "${FIRST[@]}"
  recipe fan-nsma-3 "${FIRST[@]}"
  recipe fan-nsma-1 "${SECOND[@]}"
  recipe fan-nsma-3 "${SECOND[@]}"
  recipe fan-nsma-1 "${THIRD[@]}"
  recipe fan-nsma-1 "${FOURTH[@]}"  # (tried after the shipped rows)
} &
queue=$!
{
  recipe fan-nsma-2 "${FIRST[@]}"
  recipe fan-nsma-0 "${SQRT[@]}"
  recipe fan-nsma-2 "${SECOND[@]}"
  recipe fan-nsma-2 "${THIRD[@]}"
  recipe fan-nsma-2 "${FOURTH[@]}"  # (tried after the shipped rows)
}
wait $queue
