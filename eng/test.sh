#!/usr/bin/env bash
# Runs every PeerLink test: the command the README gives and the one .ci/run calls.
# Usage: bash eng/test.sh [extra dotnet test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that need operating-system packages (network namespaces, Avahi, coturn) install them through
# eng/install-test-prerequisites.sh once such tests exist; the tests of the foundation need nothing beyond the .NET SDK.
if [ -x eng/install-test-prerequisites.sh ]; then
  eng/install-test-prerequisites.sh
fi

# Local .NET tools the tests run (dotnet-counters, pinned in dotnet-tools.json).
dotnet tool restore >/dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test PeerLink.sln -c Release "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One plain summary line over all test assemblies: "tests: N passed, N failed, N skipped".
awk '
  /(Passed|Failed)! +- +Failed: +[0-9]+, +Passed: +[0-9]+, +Skipped: +[0-9]+/ {
    gsub(/,/, ""); for (i = 1; i <= NF; i++) {
      if ($i == "Failed:") f += $(i + 1); if ($i == "Passed:") p += $(i + 1); if ($i == "Skipped:") s += $(i + 1)
    }
    found = 1
  }
  END { if (found) printf "tests: %d passed, %d failed, %d skipped\n", p, f, s; else print "tests: no test summary found" }
' "$log"

# The packages: pack, then build and run a sample against them alone (skip with PEERLINK_SKIP_PACKAGE_CHECK=1 when
# iterating on tests).
if [ "${PEERLINK_SKIP_PACKAGE_CHECK:-0}" != "1" ]; then
  if ! bash eng/package-check.sh; then
    echo "package-check: FAILED" >&2
    status=1
  fi
fi
# Every fuzz target for a short fixed budget, so that the harnesses cannot rot (AFL++ installs as root only).
if [ "${PEERLINK_SKIP_FUZZ:-0}" != "1" ]; then
  if [ "$(id -u)" = 0 ] || command -v afl-fuzz >/dev/null; then
    if ! bash eng/fuzz.sh all --seconds "${PEERLINK_FUZZ_SECONDS:-10}"; then
      echo "fuzz: FAILED (a target crashed, hung or did not start; see fuzz/findings/)" >&2
      status=1
    fi
  else
    echo "fuzz: skipped (not root: AFL++ cannot be installed)"
  fi
fi

if [ "${PEERLINK_SKIP_AOT_CHECK:-0}" != "1" ]; then
  if ! bash eng/aot-check.sh; then
    echo "aot-check: FAILED" >&2
    status=1
  fi
fi
exit "$status"
