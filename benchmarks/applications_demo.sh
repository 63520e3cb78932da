#!/usr/bin/env bash
# Judge Hack and Tie Break end to end on demo data, with the embedded model as judge and generator.
# Usage: bash benchmarks/applications_demo.sh [OUT_DIR]   (about 20 minutes on 2 cores)
#
# The judge is calibrated (both orders averaged): the 1.5B model always prefers the first slot, so
# the paper's protocol gives only ties. The concept set and features are the planted ones
# (demo-data --oracle), so that the run
# measures the applications, not discovery or representation.
set -euo pipefail
out=${1:-applications-demo}
rm -rf "$out"
preflens demo-data --out "$out/data" --pairs-per-domain 10 --oracle
preflens validate "$out/data/pairs.jsonl" --out "$out/run"
cp "$out/data/concepts.json" "$out/run/concepts.json"
cp "$out/data/oracle_features.parquet" "$out/run/features.parquet"
time preflens judge "$out/run" --as local_judge --llm local --calibrated --tie-margin 0.01 --cache "$out/cache.sqlite"
preflens fit "$out/run"
preflens compare "$out/run" --first human --second local_judge --top 3
time preflens steer "$out/run" --judge local_judge --queries-per-domain 2 --k 2 --max-tokens 150 --llm local --calibrated \
    --cache "$out/cache.sqlite"
time preflens tiebreak "$out/run" --judge local_judge --reference human --k 2 --llm local --calibrated \
    --tie-margin 0.01 --cache "$out/cache.sqlite"
