#!/usr/bin/env bash
# Small devices: publishes samples/SmartHome with NativeAOT for linux-x64 and runs the whole scene from that binary,
# then publishes it trimmed and self-contained for linux-arm64. TreatWarningsAsErrors makes any AOT or trimming warning
# fail the publish. eng/test.sh runs it (skip with PEERLINK_SKIP_AOT_CHECK=1); alone: bash eng/aot-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/peerlink-aot.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "aot-check: NativeAOT linux-x64"
dotnet publish samples/SmartHome/SmartHome.csproj -c Release -r linux-x64 -p:PublishAot=true -o "$work/aot" --nologo -v quiet
ls -l "$work/aot/SmartHome"
"$work/aot/SmartHome" | tee "$work/scene.txt"
grep -q "motion to light: median" "$work/scene.txt"
grep -q "phone: light off" "$work/scene.txt"
"$work/aot/SmartHome" footprint

echo "aot-check: trimmed, self-contained linux-arm64"
dotnet publish samples/SmartHome/SmartHome.csproj -c Release -r linux-arm64 --self-contained -p:PublishTrimmed=true -o "$work/arm64" --nologo -v quiet
# ELF e_machine (offset 18) is 183 for AArch64.
[ "$(od -An -tu2 -j18 -N2 "$work/arm64/SmartHome" | tr -d ' ')" = "183" ] || { echo "aot-check: no arm64 binary" >&2; exit 1; }
du -sh "$work/arm64"
echo "aot-check: both published without warnings; the NativeAOT scene ran"
