#!/usr/bin/env bash
# The one test command for a fresh machine: install what is missing, then run every check and
# every test (real MariaDB, php-fpm, nginx and WordPress processes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
# A short coverage-guided fuzzing run of the decoders, the tracker and the classifier.
scripts/fuzz.sh --seconds 20
