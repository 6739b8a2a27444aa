#!/usr/bin/env bash
# Every adapter crate compiles on its own with no default features and with each of its features
# alone: a user who turns the defaults off, or picks one feature, gets a crate that builds.
# Quick (`cargo check` of the library only); .ci/run calls it before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# The adapters: every workspace crate that implements a store or a web layer, read from the
# workspace itself so a new adapter is checked without editing this file.
mapfile -t lines < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    name = package["name"]
    if name in ("narvik-core", "narvik-conformance", "narvik-faults", "narvik-demo"):
        continue
    features = sorted(feature for feature in package["features"] if feature != "default")
    print(name, *features)
')

status=0
for line in "${lines[@]}"; do
  read -r -a words <<<"$line"
  crate="${words[0]}"
  echo "check-features: $crate with no default features" >&2
  cargo check --quiet -p "$crate" --lib --no-default-features || status=1
  for feature in "${words[@]:1}"; do
    echo "check-features: $crate with only \`$feature\`" >&2
    cargo check --quiet -p "$crate" --lib --no-default-features --features "$feature" || status=1
  done
done
exit "$status"
