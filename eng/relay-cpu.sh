#!/usr/bin/env bash
# relay-cpu.sh: the rendezvous node's CPU time per relayed MB, through real NATs (as root). Two devices behind
# symmetric NATs (which stay relayed) echo 4,096 messages of 16 KiB each way through a node on the lab's server host;
# the node's user+system CPU time is read from /proc before and after, three times. Prints one line per run.
# Needs the test projects built: dotnet build -c Release tests/PeerLink.LabTests
set -euo pipefail
cd "$(dirname "$0")/.."
export NATLAB_PREFIX=relaycpu-
H=tests/PeerLink.LabTests/bin/Release/net10.0/PeerLink.LabTests.dll
OUT=$(mktemp -d)
trap 'bash eng/natlab.sh down; rm -rf "$OUT"' EXIT
bash eng/natlab.sh up symmetric symmetric
(sleep 900 | ip netns exec relaycpu-server dotnet "$H" rendezvous 203.0.113.10:7400 3478 > "$OUT/node" 2>&1) &
until grep -q ready "$OUT/node" 2>/dev/null; do sleep 0.2; done
NODE=$(awk '/^ready/{print $2}' "$OUT/node")
PID=$(pgrep -f "LabTests.dll rendezvous 203.0.113.10" | head -1)
(sleep 900 | ip netns exec relaycpu-peer-b dotnet "$H" device-listen 203.0.113.10:7400 "$NODE" > "$OUT/callee" 2>&1) &
until grep -q ready "$OUT/callee" 2>/dev/null; do sleep 0.2; done
PEER=$(awk '/^ready/{print $2}' "$OUT/callee")
ticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
for run in 1 2 3; do
  before=$(ticks)
  ip netns exec relaycpu-peer-a dotnet "$H" device-connect 203.0.113.10:7400 "$NODE" "$PEER" 4096 60000 16384 > "$OUT/caller"
  after=$(ticks)
  echo "run $run: node CPU $(( (after - before) * 1000 / HZ )) ms for 128 MiB relayed; caller: $(cut -c1-60 "$OUT/caller")"
done
