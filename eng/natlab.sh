#!/usr/bin/env bash
# natlab.sh: a NAT laboratory made of Linux network namespaces, veth pairs, a bridge and nftables NAT.
# Adapted from the team's reference lab (shared NATLAB.md); needs root. Nothing touches the root namespace.
#
#   natlab.sh up TYPE_A TYPE_B    build the lab (an existing one with the same prefix is torn down first)
#   natlab.sh down                kill every process in the lab's namespaces, delete the namespaces
#   natlab.sh exec HOST CMD...    run CMD inside HOST's namespace
#
# HOST: public server nat-a nat-b peer-a peer-b
# TYPE: none | full-cone | restricted | port-restricted | symmetric
#
#                      public (bridge br0 203.0.113.1; no forwarding, no route out)
#          +--------------------+------------------------+
#       server                nat-a                    nat-b
#   203.0.113.10, .11    wan0 203.0.113.101       wan0 203.0.113.102
#                        lan0 10.0.1.1            lan0 10.0.2.1
#                             |                        |
#                          peer-a 10.0.1.2          peer-b 10.0.2.2
#
# NATLAB_PREFIX (default "natlab-") names the namespaces, so that several labs can exist at once.
# NATLAB_MAP_TIMEOUT (default 120) is the lifetime in seconds of the full-cone and restricted mappings (nft maps).
# NATLAB_UDP_TIMEOUT and NATLAB_UDP_STREAM_TIMEOUT set the routers' nf_conntrack_udp_timeout(_stream) (kernel
# defaults 30 and 120 s), for mapping-lifetime and keepalive tests that run in seconds.
# full-cone and restricted are not native to Linux conntrack: they are built from an nftables map of
# external port -> internal endpoint (and, for restricted, a set of permitted remote addresses), as the
# reference lab worked out. port-restricted is plain masquerade; symmetric is masquerade fully-random.
set -euo pipefail

PFX=${NATLAB_PREFIX:-natlab-}
MAP_TIMEOUT=${NATLAB_MAP_TIMEOUT:-120}
UDP_TIMEOUT=${NATLAB_UDP_TIMEOUT:-}
UDP_STREAM_TIMEOUT=${NATLAB_UDP_STREAM_TIMEOUT:-}
HOSTS=(public server nat-a nat-b peer-a peer-b)
declare -A WAN_IP=([a]=203.0.113.101 [b]=203.0.113.102)
declare -A LAN_NET=([a]=10.0.1.0/24 [b]=10.0.2.0/24)
declare -A LAN_GW=([a]=10.0.1.1 [b]=10.0.2.1)
declare -A PEER_IP=([a]=10.0.1.2 [b]=10.0.2.2)

die() { echo "natlab: $*" >&2; exit 1; }
ns() { echo "${PFX}$1"; }
in_ns() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }

ruleset() {   # $1 = type, $2 = a|b
  local type=$1 wan=${WAN_IP[$2]} lan=${LAN_NET[$2]}
  if [ "$type" = none ]; then
    printf 'table ip natlab {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n  }\n}\n'
    return
  fi
  local masq=masquerade cone=0 restricted=0 p
  [ "$type" = symmetric ] && masq="masquerade fully-random"
  [ "$type" = full-cone ] && cone=1
  [ "$type" = restricted ] && { cone=1; restricted=1; }
  echo "table ip natlab {"
  if [ $cone = 1 ]; then
    cat <<NFT
  map cone_udp { type inet_service : ipv4_addr . inet_service; flags timeout; timeout ${MAP_TIMEOUT}s; }
  map cone_tcp { type inet_service : ipv4_addr . inet_service; flags timeout; timeout ${MAP_TIMEOUT}s; }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan0" ip daddr $wan dnat ip to udp dport map @cone_udp
    iifname "wan0" ip daddr $wan dnat ip to tcp dport map @cone_tcp
  }
NFT
  fi
  if [ $restricted = 1 ]; then
    cat <<NFT
  set perm_udp { type inet_service . ipv4_addr; flags timeout; timeout ${MAP_TIMEOUT}s; }
  set perm_tcp { type inet_service . ipv4_addr; flags timeout; timeout ${MAP_TIMEOUT}s; }
  chain prefilter {
    type filter hook prerouting priority mangle; policy accept;
    iifname "wan0" ip daddr $wan ct state new udp dport . ip saddr != @perm_udp drop
    iifname "wan0" ip daddr $wan ct state new tcp dport . ip saddr != @perm_tcp drop
  }
NFT
  fi
  cat <<NFT
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ip saddr $lan $masq
  }
NFT
  if [ $cone = 1 ]; then
    # After SNAT (srcnat + 1), so that the reply tuple holds the external port.
    echo "  chain track {"
    echo "    type filter hook postrouting priority srcnat + 1; policy accept;"
    for p in udp tcp; do
      echo "    oifname \"wan0\" ct direction original ct original ip saddr $lan meta l4proto $p update @cone_$p { ct reply proto-dst : ct original ip saddr . ct original proto-src }"
      if [ $restricted = 1 ]; then
        echo "    oifname \"wan0\" ct direction original ct original ip saddr $lan meta l4proto $p update @perm_$p { ct reply proto-dst . ip daddr }"
      fi
    done
    echo "  }"
  fi
  # A forwarding firewall; and unsolicited WAN packets never reach the router's own stack (a locally delivered
  # packet leaves a confirmed conntrack entry that later makes SNAT choose another port).
  cat <<NFT
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
    iifname "wan0" oifname "lan0" ct status dnat accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state established,related accept
    iifname "wan0" drop
  }
}
NFT
}

cmd_up() {
  [ $# -eq 2 ] || die "usage: natlab.sh up TYPE_A TYPE_B"
  local x type
  for type in "$1" "$2"; do
    case "$type" in none|full-cone|restricted|port-restricted|symmetric) ;; *) die "unknown NAT type '$type'" ;; esac
  done
  command -v nft >/dev/null || die "nft not found (eng/install-test-prerequisites.sh installs nftables)"
  cmd_down
  local h
  for h in "${HOSTS[@]}"; do
    ip netns add "$(ns "$h")"
    ip -n "$(ns "$h")" link set lo up
    in_ns "$h" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 >/dev/null
  done
  local P S N Q
  P=$(ns public); S=$(ns server)
  ip -n "$P" link add br0 type bridge forward_delay 0 stp_state 0
  ip -n "$P" addr add 203.0.113.1/24 dev br0
  ip -n "$P" link set br0 up
  in_ns public sysctl -q -w net.ipv4.ip_forward=0 net.bridge.bridge-nf-call-iptables=0 >/dev/null 2>&1 || true
  ip -n "$S" link add eth0 type veth peer name p-server netns "$P"
  ip -n "$P" link set p-server master br0 up
  ip -n "$S" addr add 203.0.113.10/24 dev eth0
  ip -n "$S" addr add 203.0.113.11/24 dev eth0
  ip -n "$S" link set eth0 up
  ip -n "$S" route add default via 203.0.113.1
  for x in a b; do
    N=$(ns "nat-$x"); Q=$(ns "peer-$x")
    if [ $x = a ]; then type=$1; else type=$2; fi
    ip -n "$N" link add wan0 type veth peer name "p-nat-$x" netns "$P"
    ip -n "$P" link set "p-nat-$x" master br0 up
    ip -n "$N" addr add "${WAN_IP[$x]}/24" dev wan0
    ip -n "$N" link set wan0 up
    ip -n "$N" route add default via 203.0.113.1
    ip -n "$N" link add lan0 type veth peer name eth0 netns "$Q"
    ip -n "$N" addr add "${LAN_GW[$x]}/24" dev lan0
    ip -n "$N" link set lan0 up
    ip -n "$Q" addr add "${PEER_IP[$x]}/24" dev eth0
    ip -n "$Q" link set eth0 up
    ip -n "$Q" route add default via "${LAN_GW[$x]}"
    ruleset "$type" "$x" | ip netns exec "$N" nft -f -
    in_ns "nat-$x" sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 >/dev/null
    # The conntrack sysctls exist per namespace once a ruleset uses conntrack (every type but none).
    if [ "$type" != none ]; then
      if [ -n "$UDP_TIMEOUT" ]; then in_ns "nat-$x" sysctl -q -w "net.netfilter.nf_conntrack_udp_timeout=$UDP_TIMEOUT" >/dev/null; fi
      if [ -n "$UDP_STREAM_TIMEOUT" ]; then in_ns "nat-$x" sysctl -q -w "net.netfilter.nf_conntrack_udp_timeout_stream=$UDP_STREAM_TIMEOUT" >/dev/null; fi
    fi
  done
  # A routed ('none') LAN must be reachable from the public segment: once both routers exist.
  for x in a b; do
    if [ $x = a ]; then type=$1; else type=$2; fi
    [ "$type" = none ] || continue
    local other; other=$([ $x = a ] && echo b || echo a)
    for h in public server "nat-$other"; do ip -n "$(ns "$h")" route add "${LAN_NET[$x]}" via "${WAN_IP[$x]}"; done
  done
}

cmd_down() {
  local h n pids
  for h in "${HOSTS[@]}"; do
    n=$(ns "$h")
    [ -e "/run/netns/$n" ] || continue
    pids=$(ip netns pids "$n" 2>/dev/null || true)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  done
  for h in "${HOSTS[@]}"; do
    n=$(ns "$h")
    [ -e "/run/netns/$n" ] && ip netns del "$n"
  done
  return 0
}

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces and netfilter need CAP_NET_ADMIN and CAP_SYS_ADMIN)"
case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  exec) shift; [ $# -ge 2 ] || die "usage: natlab.sh exec HOST CMD..."; h=$1; shift; in_ns "$h" "$@" ;;
  *) die "usage: natlab.sh up TYPE_A TYPE_B | down | exec HOST CMD..." ;;
esac
