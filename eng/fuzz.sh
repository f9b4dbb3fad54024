#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads the network: AFL++ drives fuzz/PeerLink.Fuzz through SharpFuzz,
# with the PeerLink assemblies instrumented. Each target runs for SECONDS (or until EXECS executions, whichever comes
# first) with a 1 s hang limit; the report gives executions, coverage, corpus and findings per target, and the exit
# code is non-zero when any target crashed or hung. Findings are copied to fuzz/findings/TARGET/ to become tests.
#
# Usage: bash eng/fuzz.sh [TARGET…|all] [--seconds S] [--execs N]
#   CI:      eng/test.sh runs every target for 10 s (PEERLINK_FUZZ_SECONDS), so that the harnesses cannot rot.
#   Record:  bash eng/fuzz.sh all --seconds 3600 --execs 1000000   (docs/security.md)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=()
seconds=10
execs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --execs) execs="$2"; shift 2 ;;
    all) targets+=(dns mdns stun stun-server noise-xx noise-ik hello rendezvous records datagram); shift ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(dns mdns stun stun-server noise-xx noise-ik hello rendezvous records datagram)

bash eng/install-fuzz-prerequisites.sh
work=$(mktemp -d /tmp/peerlink-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

dotnet build fuzz/PeerLink.Fuzz/PeerLink.Fuzz.csproj -c Release -o "$work/bin" --nologo -v quiet
python3 eng/fuzz-seeds.py "$work/seeds"
dotnet "$work/bin/PeerLink.Fuzz.dll" seeds "$work/seeds"   # before instrumenting: instrumented code runs only under AFL
for assembly in PeerLink PeerLink.Discovery PeerLink.Nat; do
  dotnet tool run sharpfuzz "$work/bin/$assembly.dll" >/dev/null
done

export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
failed=0
mkdir -p "$work/findings"
printf '%-12s %12s %10s %8s %8s %8s %8s\n' target execs "execs/s" coverage corpus crashes hangs
for target in "${targets[@]}"; do
  limit=()
  [ "$execs" -gt 0 ] && limit=(-E "$execs")
  afl-fuzz -i "$work/seeds/$target" -o "$work/findings/$target" -t 1000 -m none -V "$seconds" "${limit[@]}" \
    -- dotnet "$work/bin/PeerLink.Fuzz.dll" "$target" >"$work/$target.log" 2>&1 || true
  stats="$work/findings/$target/default/fuzzer_stats"
  if [ ! -f "$stats" ]; then
    echo "fuzz: $target did not start:" >&2
    tail -20 "$work/$target.log" >&2
    failed=1
    continue
  fi
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(get saved_crashes); hangs=$(get saved_hangs)
  printf '%-12s %12s %10s %8s %8s %8s %8s\n' "$target" "$(get execs_done)" "$(get execs_per_sec)" "$(get bitmap_cvg)" "$(get corpus_count)" "$crashes" "$hangs"
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    failed=1
    mkdir -p "fuzz/findings/$target"
    cp "$work/findings/$target/default/crashes/"id* "$work/findings/$target/default/hangs/"id* "fuzz/findings/$target/" 2>/dev/null || true
  fi
done
exit "$failed"
