#!/usr/bin/env bash
# Installs what the tests need from Debian's packages: nftables, iproute2 and conntrack for the NAT laboratory
# (eng/natlab.sh; conntrack deletes a router's UDP mappings to make them expire on cue), coturn for the STUN interoperability tests (turnserver, turnutils_stunclient), and avahi-daemon,
# avahi-utils and dbus for the mDNS interoperability tests (eng/mdnslab.sh runs them inside namespaces only), and
# nats-server for the rendezvous tier tests (they start their own servers on loopback ports).
# Runs only as root; otherwise the tests that need them skip themselves and say why.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-test-prerequisites: not root; the NAT laboratory and coturn interop tests may be skipped."
  exit 0
fi
missing=()
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v turnserver >/dev/null || missing+=(coturn)
command -v avahi-daemon >/dev/null || missing+=(avahi-daemon)
command -v avahi-browse >/dev/null || missing+=(avahi-utils)
command -v dbus-daemon >/dev/null || missing+=(dbus-daemon)
command -v nats-server >/dev/null || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-prerequisites: installing ${missing[*]}"
  # Packages must not start their daemons here: an avahi-daemon in the host's namespace would multicast on the
  # machine's real interfaces. policy-rc.d (exit 101) tells invoke-rc.d not to start anything during the install.
  added_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  avahi_before=$(pgrep -x avahi-daemon || true)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
  # Belt and braces: stop any avahi-daemon the install started in this namespace.
  for pid in $(pgrep -x avahi-daemon || true); do
    case " $avahi_before " in *" $pid "*) ;; *) kill "$pid" 2>/dev/null || true ;; esac
  done
fi
