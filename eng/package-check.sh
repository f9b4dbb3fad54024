#!/usr/bin/env bash
# Packs every library into a local folder, then builds and runs the Chat and Worker samples against those packages, with that folder
# as its only source of PeerLink (no project references): a package that is broken, misses a dependency or an asset
# fails here. eng/test.sh runs it; alone: bash eng/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/peerlink-packages.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A version no earlier run used, so no cache anywhere can answer for it.
version="0.1.0-check.$(date -u +%Y%m%d%H%M%S).$$"

echo "package-check: packing $version into $work/feed"
dotnet pack PeerLink.sln -c Release -o "$work/feed" -p:Version="$version" --nologo -v quiet
ls "$work/feed"

# PeerLink* may come only from the local feed; everything else from the configured registry.
upstream=$(dotnet nuget list source --format short | awk '$1 ~ /^E/ { print $2; exit }')
cat > "$work/NuGet.Config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="upstream" value="$upstream" />
  </packageSources>
  <packageSourceMapping>
    <packageSource key="local"><package pattern="PeerLink*" /></packageSource>
    <packageSource key="upstream"><package pattern="*" /></packageSource>
  </packageSourceMapping>
</configuration>
XML

# The sample is built from a copy outside the repository: no src/ beside it, no bin/ or obj/ of earlier builds. A private
# package folder (falling back on the user's for what is already downloaded) keeps the check's packages out of the
# user's cache.
tree="$work/tree"
mkdir -p "$tree"
cp Directory.Build.props Directory.Packages.props global.json "$tree/"
mkdir -p "$tree/samples"
cp samples/Directory.Build.props samples/Directory.Build.targets "$tree/samples/"
for sample in Chat Worker; do
  mkdir -p "$tree/samples/$sample"
  cp samples/$sample/*.cs samples/$sample/*.csproj "$tree/samples/$sample/"
  cp samples/$sample/*.json "$tree/samples/$sample/" 2>/dev/null || true
done
mv "$work/NuGet.Config" "$tree/NuGet.Config"
export NUGET_PACKAGES="$work/packages"
for sample in Chat Worker; do
  dotnet build "$tree/samples/$sample/$sample.csproj" -c Release --nologo -v quiet \
    -p:PeerLinkPackageVersion="$version" -p:RestoreFallbackFolders="$HOME/.nuget/packages"
done

# Prove where PeerLink came from: the assets files list the packages, and no src/ project.
for sample in Chat Worker; do
  assets="$tree/samples/$sample/obj/project.assets.json"
  grep -q "\"PeerLink/$version\"" "$assets"
  if grep -q '"type": "project"' "$assets"; then
    echo "package-check: $sample still references a project" >&2
    exit 1
  fi
done
grep -q "\"PeerLink.Discovery/$version\"" "$tree/samples/Chat/obj/project.assets.json"
grep -q "\"PeerLink.Nat/$version\"" "$tree/samples/Chat/obj/project.assets.json"
grep -q "\"PeerLink.Hosting/$version\"" "$tree/samples/Worker/obj/project.assets.json"

dotnet "$tree/samples/Chat/bin/Release/net10.0/Chat.dll" demo
(cd "$tree/samples/Worker/bin/Release/net10.0" && dotnet Worker.dll --demo)
# The tool, installed from the feed as a user would.
dotnet tool install PeerLink.Cli --version "$version" --tool-path "$work/tools" --configfile "$tree/NuGet.Config" >/dev/null
"$work/tools/peerlink" id new --file "$work/id/tool.key" | grep -q "^peer id: "
echo "package-check: Chat and Worker ran on the PeerLink $version packages; the peerlink tool installed and ran"
