#!/usr/bin/env bash
# udp-fairness.sh: two sessions share one bottleneck (as root). A device behind router a sends BYTES over each at the
# same time to sinks on the lab's server host. The bottleneck is router a's link towards the server:
#   FAIRNESS_BOTTLENECK=queue (default): a token-bucket queue (tc tbf) at RATE MB/s holding QUEUE_MS of data, dropping
#     at its tail when full, as a home router's uplink does;
#   FAIRNESS_BOTTLENECK=police: an nftables policer (`limit rate over`) that drops the excess with no queue at all.
# FAIRNESS_FLOWS picks the pair: "udp tcp:cubic" by default; a TCP flow is tcp[:CONGESTION_CONTROL] (cubic, reno, bbr:
# the sender's TCP_CONGESTION; plain tcp takes the kernel's default), and "tcp:cubic tcp:cubic" is the baseline, how
# fairly two TCP sessions share the same bottleneck.
# Five rounds (FAIRNESS_ROUNDS); prints each flow's time per round and the first flow's share of the bottleneck while
# both ran (0.5 is even).
# Usage: bash eng/udp-fairness.sh [RATE_MBYTES_PER_S] [BYTES] [QUEUE_MS]   (defaults 10, 16777216, 20)
# Needs the test projects built: dotnet build -c Release tests/PeerLink.LabTests
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-10}
BYTES=${2:-16777216}
QUEUE_MS=${3:-20}
MODE=${FAIRNESS_BOTTLENECK:-queue}
read -r FIRST SECOND <<< "${FAIRNESS_FLOWS:-udp tcp:cubic}"
kind() { echo "${1%%:*}"; }
ccname() { case "$1" in *:*) echo "${1#*:}" ;; esac; }
ROUNDS=${FAIRNESS_ROUNDS:-5}
export NATLAB_PREFIX=fair-
H=tests/PeerLink.LabTests/bin/Release/net10.0/PeerLink.LabTests.dll
OUT=$(mktemp -d)
trap 'exec 3>&-; bash eng/natlab.sh down; rm -rf "$OUT"' EXIT
bash eng/natlab.sh up port-restricted port-restricted
for dev in "fair-peer-a eth0" "fair-server eth0" "fair-nat-a wan0" "fair-nat-a lan0"; do
  set -- $dev; ip -n "$1" link set dev "$2" gso_max_segs 1   # wire-sized packets, as in udp-goodput.sh
done
# The sinks run until their standard input closes: this script holds the FIFO open while it runs.
mkfifo "$OUT/stdin"
ip netns exec fair-server dotnet "$H" sink "$(kind "$FIRST")" 203.0.113.10:7500 < "$OUT/stdin" > "$OUT/1" 2>&1 &
ip netns exec fair-server dotnet "$H" sink "$(kind "$SECOND")" 203.0.113.10:7501 < "$OUT/stdin" > "$OUT/2" 2>&1 &
exec 3> "$OUT/stdin"
until grep -q ready "$OUT/1" 2>/dev/null && grep -q ready "$OUT/2" 2>/dev/null; do sleep 0.2; done
if [ "$MODE" = police ]; then
  ip netns exec fair-nat-a nft insert rule ip natlab forward oifname wan0 limit rate over "$RATE" mbytes/second drop
else
  # tbf: RATE MB/s, a burst of two wire packets, a queue of QUEUE_MS at that rate.
  ip netns exec fair-nat-a tc qdisc replace dev wan0 root tbf rate "$((RATE * 8))mbit" burst 3028 \
    limit "$((RATE * 1000 * QUEUE_MS))"
fi
peer1=$(awk '/ready/ {print $2}' "$OUT/1"); peer2=$(awk '/ready/ {print $2}' "$OUT/2")
echo "bottleneck: $MODE, $RATE MB/s$([ "$MODE" = queue ] && echo ", queue $QUEUE_MS ms"); flows: $FIRST, $SECOND"
: > "$OUT/share"
for run in $(seq 1 "$ROUNDS"); do
  ip netns exec fair-peer-a nstat -n > /dev/null   # TCP counters from here
  PEERLINK_LAB_TCP_CC=$(ccname "$FIRST") ip netns exec fair-peer-a dotnet "$H" send "$(kind "$FIRST")" 203.0.113.10:7500 "$peer1" "$BYTES" > "$OUT/a.$run" 2> "$OUT/a.$run.err" &
  a=$!
  PEERLINK_LAB_TCP_CC=$(ccname "$SECOND") ip netns exec fair-peer-a dotnet "$H" send "$(kind "$SECOND")" 203.0.113.10:7501 "$peer2" "$BYTES" > "$OUT/b.$run" 2> "$OUT/b.$run.err" &
  b=$!
  if [ -n "${FAIRNESS_TRACE:-}" ]; then   # the TCP flow's window and round trip every 100 ms
    while kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null; do
      ip netns exec fair-peer-a ss -tin dst 203.0.113.10 | grep -v State | tr -s ' ' | tr '\n' ' ' || true
      ip netns exec fair-nat-a tc -s qdisc show dev wan0 | grep -o 'dropped [0-9]*\|backlog [0-9]*b' | tr '\n' ' ' || true; echo
      sleep 0.1
    done > "$OUT/trace.$run"
    cp "$OUT/trace.$run" "/tmp/fairness-trace.$run"
  fi
  wait $a $b
  am=$(awk '{print $3}' "$OUT/a.$run"); bm=$(awk '{print $3}' "$OUT/b.$run")
  # While both run, the shares: the flow that finishes first sent all its bytes; the other is taken to have had the
  # bottleneck to itself afterwards (RATE MB/s), which gives what it sent before.
  awk -v u="$am" -v t="$bm" -v b="$BYTES" -v r="$run" -v rate="$RATE" -v f="$FIRST" -v s="$SECOND" 'BEGIN {
    first = (u < t) ? u : t; last = (u < t) ? t : u
    other = b - rate * 1e6 * (last - first) / 1000; if (other < 0) other = 0
    us = (u < t) ? b / (b + other) : other / (b + other)
    printf "run %d: first (%s) %d ms, second (%s) %d ms; first flow share while both ran %.2f\n", r, f, u, s, t, us
    printf "%.4f\n", us > "/dev/stderr" }' 2>> "$OUT/share"
  cat "$OUT/a.$run.err" "$OUT/b.$run.err"
  ip netns exec fair-peer-a nstat TcpRetransSegs TcpExtTCPLossProbes TcpOutSegs 2>/dev/null | awk 'NR > 1 {printf " %s %s", $1, $2} END {print ""}'
done
sort -n "$OUT/share" | awk -v r="$RATE" -v f="$FIRST" '{a[NR]=$1} END { printf "bottleneck %s MB/s: median %s share %.2f (0.5 = even)\n", r, f, a[int((NR+1)/2)] }'
