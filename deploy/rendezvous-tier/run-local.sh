#!/usr/bin/env bash
# run-local.sh: a rendezvous tier on this machine's loopback, as docs/deploy-rendezvous.md describes it: three NATS
# servers in a cluster (nats-1..3.conf, clients on 127.0.0.1:4222-4224) and three rendezvous nodes (samples/Rendezvous,
# on 127.0.0.1:7401-7403, each preferring its own NATS server). Prints each node's PeerId and the Chat commands that
# attach devices to different nodes. Ctrl+C stops everything. Needs nats-server (Debian: apt install nats-server).
# State (node identities, logs) goes to ${TIER_DIR:-/tmp/peerlink-tier}.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
ROOT=$(cd ../.. && pwd)
DIR=${TIER_DIR:-/tmp/peerlink-tier}
mkdir -p "$DIR"
command -v nats-server >/dev/null || { echo "run-local: nats-server is not installed (apt install nats-server)" >&2; exit 2; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for n in 1 2 3; do
  nats-server -c "$HERE/nats-$n.conf" > "$DIR/nats-$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do
  until grep -q "Server is ready" "$DIR/nats-$n.log" 2>/dev/null; do sleep 0.2; done
done

dotnet build -c Release "$ROOT/samples/Rendezvous" > "$DIR/build.log" 2>&1 || { cat "$DIR/build.log" >&2; exit 1; }
NODE="$ROOT/samples/Rendezvous/bin/Release/net10.0/Rendezvous.dll"
urls=(nats://127.0.0.1:4222 nats://127.0.0.1:4223 nats://127.0.0.1:4224)
for n in 1 2 3; do
  # Node n prefers NATS server n, then the others.
  mine="${urls[$((n - 1))]},${urls[$((n % 3))]},${urls[$(((n + 1) % 3))]}"
  dotnet "$NODE" --listen "127.0.0.1:740$n" --stun-port 0 --identity "$DIR/node-$n.key" \
    --nats "$mine" --nats-user "node-$n" --nats-password "example-node-$n-secret" --presence-bucket peerlink-presence \
    > "$DIR/node-$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do
  until grep -q "^PeerId" "$DIR/node-$n.log" 2>/dev/null; do
    if ! kill -0 "${pids[$((n + 2))]}" 2>/dev/null; then cat "$DIR/node-$n.log" >&2; exit 1; fi
    sleep 0.2
  done
done

echo "rendezvous tier on loopback (logs in $DIR):"
args=""
for n in 1 2 3; do
  id=$(awk '/^PeerId/ {print $2}' "$DIR/node-$n.log")
  echo "  node $n: 127.0.0.1:740$n  PeerId $id"
  args="$args --rendezvous 127.0.0.1:740$n --rendezvous-peer $id"
  eval "node_$n=\"--rendezvous 127.0.0.1:740$n --rendezvous-peer $id\""
done
echo "a device on node 1:   dotnet run --project samples/Chat -- listen --identity $DIR/light.key $node_1"
echo "a device on node 2:   dotnet run --project samples/Chat -- connect --peer LIGHT-PEERID --identity $DIR/sensor.key $node_2"
echo "a device on the tier: dotnet run --project samples/Chat -- listen$args"
echo "ready"
wait
