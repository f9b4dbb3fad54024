#!/usr/bin/env bash
# Installs what the tests need from Debian's packages: nftables and iproute2 for the NAT laboratory
# (eng/natlab.sh), coturn for the STUN interoperability tests (turnserver, turnutils_stunclient).
# Runs only as root; otherwise the tests that need them skip themselves and say why.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-test-prerequisites: not root; the NAT laboratory and coturn interop tests may be skipped."
  exit 0
fi
missing=()
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)
command -v turnserver >/dev/null || missing+=(coturn)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-prerequisites: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
