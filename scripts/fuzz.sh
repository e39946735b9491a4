#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through `cargo fuzz`) of the code that reads untrusted
# bytes and text: the packet decoders, the response tracker, the classifier with the routing
# decision. Each target runs for a short time (CI) or as long as asked; a crash stops the run
# and leaves its input in fuzz/artifacts/TARGET/ (replay: cargo +nightly fuzz run TARGET FILE).
# Usage: scripts/fuzz.sh [--seconds N] [TARGET...]     (default: 20 s each, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECS=20
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(packet tracker classify)
# cargo fuzz needs a nightly compiler (sanitizers) and the cargo-fuzz subcommand.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly Rust toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for t in "${TARGETS[@]}"; do
  echo "fuzz: $t for ${SECS}s"
  mkdir -p "fuzz/corpus/$t"
  if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$SECS" -max_len=4096 \
      -print_final_stats=1 >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "fuzz: $t failed (a build error, or a crash whose input is in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$LOG" | sed "s/^/fuzz: $t: /" || true
done
echo "fuzz: no failure in ${TARGETS[*]}"
