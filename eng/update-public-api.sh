#!/usr/bin/env bash
# Brings every library's PublicAPI.Unshipped.txt up to date with its code (Microsoft.CodeAnalysis.PublicApiAnalyzers):
# adds the symbols the build reports as undeclared (RS0016) and removes the ones it reports as gone (RS0017).
# Run it after a deliberate API change, then review the diff: that diff is the API change.
# Usage: bash eng/update-public-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

for project in src/*/*.csproj; do
  dir=$(dirname "$project")
  unshipped="$dir/PublicAPI.Unshipped.txt"
  [ -f "$unshipped" ] || printf '#nullable enable\n' > "$unshipped"
  log=$(mktemp)
  # --no-incremental: the analyzer reports only for what it compiles.
  dotnet build "$project" -c Release --no-incremental -p:TreatWarningsAsErrors=false -p:BuildProjectReferences=true \
    >"$log" 2>&1 || true
  python3 - "$log" "$unshipped" "$(realpath "$dir")" <<'PY'
import re, sys
log, unshipped, project_dir = sys.argv[1], sys.argv[2], sys.argv[3]
added, removed = set(), set()
for line in open(log, encoding="utf-8"):
    if not line.startswith(project_dir + "/"):
        continue  # a diagnostic of a referenced project
    m = re.search(r"(?:warning|error) RS0016: Symbol '(.*)' is not part of the declared public API", line)
    if m:
        added.add(m.group(1))
    m = re.search(r"(?:warning|error) RS0017: Symbol '(.*)' is part of the declared API, but is either not public or could not be found", line)
    if m:
        removed.add(m.group(1))
lines = [l.rstrip("\n") for l in open(unshipped, encoding="utf-8")]
header = [l for l in lines if l.startswith("#")] or ["#nullable enable"]
body = {l for l in lines if l and not l.startswith("#")}
body = (body | added) - removed
with open(unshipped, "w", encoding="utf-8") as f:
    f.write("\n".join(header + sorted(body, key=lambda s: (re.sub(r"^((static|abstract|override|virtual|const|readonly|sealed) )+", "", s), s))) + "\n")
print(f"{unshipped}: +{len(added)} -{len(removed)}")
PY
  rm -f "$log"
done
