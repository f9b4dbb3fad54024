#!/usr/bin/env bash
# udp-goodput.sh: goodput of a UDP session against a TCP session through the same lossy router (as root). A device
# behind a port-restricted NAT sends 4 MiB in 16 KiB messages to a sink on the lab's server host, over UDP and then
# over TCP, five times each, while router a drops LOSS % of all forwarded packets at random (nftables numgen, both
# directions). Prints each run's time and the median goodput of each, and their ratio.
# Loss is per packet on the wire: the senders' links carry no offloaded segments (gso_max_segs 1), since otherwise the
# kernel hands a TCP flow to the router in 64 KiB super-packets and "1 % of packets" becomes a far smaller share of
# TCP's bytes than of UDP's. GOODPUT_OFFLOAD=1 keeps the offloads (the earlier, unequal comparison).
# Usage: bash eng/udp-goodput.sh [LOSS_PERCENT] [BYTES]   (defaults 1 and 4194304)
# Needs the test projects built: dotnet build -c Release tests/PeerLink.LabTests
set -euo pipefail
cd "$(dirname "$0")/.."
LOSS=${1:-1}
BYTES=${2:-4194304}
export NATLAB_PREFIX=goodput-
H=tests/PeerLink.LabTests/bin/Release/net10.0/PeerLink.LabTests.dll
OUT=$(mktemp -d)
trap 'bash eng/natlab.sh down; rm -rf "$OUT"' EXIT
bash eng/natlab.sh up port-restricted port-restricted
if [ "${GOODPUT_OFFLOAD:-0}" != 1 ]; then
  ip -n goodput-peer-a link set dev eth0 gso_max_segs 1
  ip -n goodput-server link set dev eth0 gso_max_segs 1
  ip -n goodput-nat-a link set dev wan0 gso_max_segs 1
  ip -n goodput-nat-a link set dev lan0 gso_max_segs 1
fi
(sleep 3600 | ip netns exec goodput-server dotnet "$H" sink udp 203.0.113.10:7500 > "$OUT/udp" 2>&1) &
(sleep 3600 | ip netns exec goodput-server dotnet "$H" sink tcp 203.0.113.10:7501 > "$OUT/tcp" 2>&1) &
until grep -q ready "$OUT/udp" 2>/dev/null && grep -q ready "$OUT/tcp" 2>/dev/null; do sleep 0.2; done
ip netns exec goodput-nat-a nft insert rule ip natlab forward numgen random mod 100 "<" "$LOSS" drop
for kind in udp tcp; do
  port=$([ "$kind" = udp ] && echo 7500 || echo 7501)
  peer=$(awk '/ready/ {print $2}' "$OUT/$kind")
  : > "$OUT/$kind.ms"
  for run in 1 2 3 4 5; do
    line=$(ip netns exec goodput-peer-a dotnet "$H" send "$kind" "203.0.113.10:$port" "$peer" "$BYTES")
    echo "$kind run $run: $line"
    echo "$line" | awk '{print $3}' >> "$OUT/$kind.ms"
  done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
udp=$(median "$OUT/udp.ms"); tcp=$(median "$OUT/tcp.ms")
awk -v u="$udp" -v t="$tcp" -v b="$BYTES" -v l="$LOSS" 'BEGIN {
  printf "loss %s %%: UDP median %d ms (%.2f MB/s), TCP median %d ms (%.2f MB/s), UDP/TCP goodput %.2f\n", l, u, b/u/1000, t, b/t/1000, t/u }'
