#!/usr/bin/env bash
# udp-fairness.sh: a UDP session and a TCP session share one bottleneck (as root). A device behind router a sends BYTES
# over each at the same time to sinks on the lab's server host, while router a polices everything it forwards towards
# the server to RATE MB/s (nftables `limit rate over`, which drops the excess: this kernel has no tc queue). Five
# rounds; prints each flow's time per round and the UDP flow's share of the bottleneck while both ran (0.5 is even).
# Usage: bash eng/udp-fairness.sh [RATE_MBYTES_PER_S] [BYTES]   (defaults 10 and 16777216)
# Needs the test projects built: dotnet build -c Release tests/PeerLink.LabTests
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-10}
BYTES=${2:-16777216}
export NATLAB_PREFIX=fair-
H=tests/PeerLink.LabTests/bin/Release/net10.0/PeerLink.LabTests.dll
OUT=$(mktemp -d)
trap 'bash eng/natlab.sh down; rm -rf "$OUT"' EXIT
bash eng/natlab.sh up port-restricted port-restricted
for dev in "fair-peer-a eth0" "fair-server eth0" "fair-nat-a wan0" "fair-nat-a lan0"; do
  set -- $dev; ip -n "$1" link set dev "$2" gso_max_segs 1   # wire-sized packets, as in udp-goodput.sh
done
(sleep 3600 | ip netns exec fair-server dotnet "$H" sink udp 203.0.113.10:7500 > "$OUT/udp" 2>&1) &
(sleep 3600 | ip netns exec fair-server dotnet "$H" sink tcp 203.0.113.10:7501 > "$OUT/tcp" 2>&1) &
until grep -q ready "$OUT/udp" 2>/dev/null && grep -q ready "$OUT/tcp" 2>/dev/null; do sleep 0.2; done
ip netns exec fair-nat-a nft insert rule ip natlab forward oifname wan0 limit rate over "$RATE" mbytes/second drop
udp_peer=$(awk '/ready/ {print $2}' "$OUT/udp"); tcp_peer=$(awk '/ready/ {print $2}' "$OUT/tcp")
: > "$OUT/share"
for run in 1 2 3 4 5; do
  ip netns exec fair-peer-a dotnet "$H" send udp 203.0.113.10:7500 "$udp_peer" "$BYTES" > "$OUT/u.$run" &
  u=$!
  ip netns exec fair-peer-a dotnet "$H" send tcp 203.0.113.10:7501 "$tcp_peer" "$BYTES" > "$OUT/t.$run" &
  t=$!
  wait $u $t
  um=$(awk '{print $3}' "$OUT/u.$run"); tm=$(awk '{print $3}' "$OUT/t.$run")
  # While both run, the shares: the flow that finishes first sent all its bytes; the other is taken to have had the
  # bottleneck to itself afterwards (RATE MB/s), which gives what it sent before.
  awk -v u="$um" -v t="$tm" -v b="$BYTES" -v r="$run" -v rate="$RATE" 'BEGIN {
    first = (u < t) ? u : t; last = (u < t) ? t : u
    other = b - rate * 1e6 * (last - first) / 1000; if (other < 0) other = 0
    us = (u < t) ? b / (b + other) : other / (b + other)
    printf "run %d: UDP %d ms, TCP %d ms; UDP share while both ran %.2f\n", r, u, t, us
    printf "%.4f\n", us > "/dev/stderr" }' 2>> "$OUT/share"
done
sort -n "$OUT/share" | awk -v r="$RATE" '{a[NR]=$1} END { printf "bottleneck %s MB/s: median UDP share %.2f (0.5 = even)\n", r, a[int((NR+1)/2)] }'
