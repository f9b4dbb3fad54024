#!/usr/bin/env bash
# Installs what the fuzzing harnesses need: AFL++ from Debian's packages (root), and the SharpFuzz instrumentation tool
# (a local .NET tool pinned in dotnet-tools.json). eng/fuzz.sh runs this first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v afl-fuzz >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-fuzz-prerequisites: afl-fuzz is missing and this is not root: run as root to install Debian's afl++" >&2
    exit 1
  fi
  echo "install-fuzz-prerequisites: installing afl++"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >/dev/null
fi
dotnet tool restore >/dev/null
