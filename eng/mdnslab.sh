#!/usr/bin/env bash
# The mDNS laboratory: N hosts (network namespaces) on one Ethernet segment (a bridge in a switch namespace), with
# nothing else on it. Multicast never leaves these namespaces. Host i is 10.77.0.i/24 on eth0, plus its IPv6
# link-local address (DAD off, so it is usable at once).
#
#   MDNSLAB_PREFIX=pl1-  eng/mdnslab.sh up N          create hosts h1..hN and the switch
#   MDNSLAB_PREFIX=pl1-  eng/mdnslab.sh avahi I       start dbus-daemon and avahi-daemon (host name avahi-I) in host I;
#                                                     prints the D-Bus address for avahi-browse/avahi-publish
#   MDNSLAB_PREFIX=pl1-  eng/mdnslab.sh avahi-stop I  stop host I's avahi-daemon and dbus-daemon
#   MDNSLAB_PREFIX=pl1-  eng/mdnslab.sh link I up|down take host I's interface up or down
#   MDNSLAB_PREFIX=pl1-  eng/mdnslab.sh down          kill everything started in the lab and delete it
#
# Each avahi-daemon gets its own system bus (a private dbus-daemon) and its own /run/avahi-daemon (a tmpfs in the
# mount namespace that `ip netns exec` creates), so several run side by side and none touches the host's.
set -euo pipefail
P=${MDNSLAB_PREFIX:-mdnslab-}
STATE=/run/mdnslab/${P%-}

host() { echo "${P}h$1"; }

up() {
  local n=$1
  mkdir -p "$STATE"
  ip netns add "${P}sw"
  ip -n "${P}sw" link set lo up
  ip -n "${P}sw" link add br0 type bridge mcast_snooping 0
  ip -n "${P}sw" link set br0 up
  for i in $(seq 1 "$n"); do
    local h
    h=$(host "$i")
    ip netns add "$h"
    ip netns exec "$h" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip link add eth0 netns "$h" type veth peer name "p$i" netns "${P}sw"
    ip -n "${P}sw" link set "p$i" master br0 up
    ip -n "$h" link set lo up
    ip -n "$h" addr add "10.77.0.$i/24" dev eth0
    ip -n "$h" link set eth0 up
  done
  # Wait (at most 5 s) until every host has its link-local IPv6 address.
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 50); do
      ip -n "$(host "$i")" -6 addr show dev eth0 scope link | grep -q inet6 && break
      sleep 0.1
    done
  done
}

avahi() {
  local i=$1 h dir
  h=$(host "$i")
  dir="$STATE/avahi-$i"
  mkdir -p "$dir"
  cat > "$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
CONF
  cat > "$dir/avahi-daemon.conf" <<CONF
[server]
host-name=avahi-$i
use-ipv4=yes
use-ipv6=yes
allow-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
CONF
  ip netns exec "$h" dbus-daemon --config-file="$dir/bus.conf" --fork --print-pid > "$dir/dbus.pid"
  for _ in $(seq 1 50); do [ -S "$dir/bus" ] && break; sleep 0.1; done
  mkdir -p /run/avahi-daemon
  ip netns exec "$h" sh -c "mount -t tmpfs mdnslab /run/avahi-daemon && DBUS_SYSTEM_BUS_ADDRESS=unix:path=$dir/bus exec avahi-daemon -f '$dir/avahi-daemon.conf' --no-drop-root --no-chroot --no-rlimits -s" \
    > "$dir/avahi.log" 2>&1 &
  echo $! > "$dir/avahi.pid"
  # Ready when avahi answers on its bus.
  for _ in $(seq 1 100); do
    if ip netns exec "$h" env DBUS_SYSTEM_BUS_ADDRESS="unix:path=$dir/bus" avahi-resolve-host-name -4 "avahi-$i.local" >/dev/null 2>&1; then
      echo "unix:path=$dir/bus"
      return 0
    fi
    sleep 0.1
  done
  echo "avahi-daemon did not start in $h:" >&2
  cat "$dir/avahi.log" >&2
  return 1
}

avahi_stop() {
  local dir="$STATE/avahi-$1"
  for f in avahi.pid dbus.pid; do
    [ -f "$dir/$f" ] && kill "$(cat "$dir/$f")" 2>/dev/null || true
  done
  # avahi-daemon runs under `ip netns exec sh -c`: kill what is left in that host by name.
  for pid in $(ip netns pids "$(host "$1")" 2>/dev/null || true); do
    case "$(cat /proc/"$pid"/comm 2>/dev/null)" in avahi-daemon|dbus-daemon) kill "$pid" 2>/dev/null || true ;; esac
  done
  for _ in $(seq 1 50); do
    ip netns pids "$(host "$1")" | while read -r pid; do cat /proc/"$pid"/comm; done 2>/dev/null | grep -qE 'avahi-daemon|dbus-daemon' || break
    sleep 0.1
  done
  rm -f "$dir/bus"
}

link() { ip -n "$(host "$1")" link set eth0 "$2"; }

down() {
  # Kill every process in the lab's namespaces, then the namespaces.
  for ns in $(ip netns list | awk '{print $1}' | grep "^${P}" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^${P}" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$STATE"
}

cmd=${1:-}
shift || true
case "$cmd" in
  up) up "${1:-2}" ;;
  avahi) avahi "$1" ;;
  avahi-stop) avahi_stop "$1" ;;
  link) link "$1" "$2" ;;
  down) down ;;
  *) echo "usage: $0 up N | avahi I | avahi-stop I | link I up|down | down" >&2; exit 2 ;;
esac
