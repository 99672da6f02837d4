#!/usr/bin/env bash
# Runs every test and ends with one line: "N passed, N failed[, N skipped]".
#   ./test.sh            everything (what CI runs)
#   ./test.sh --quick    leaves out tests marked [Trait("Category", "Slow")]
#   ./test.sh -- ARGS    extra arguments for dotnet test (e.g. --filter FullyQualifiedName~Gguf)
# Tests that read ../shared (real models, oracles) are [SharedFact]/[SharedTheory]; where ../shared
# is absent they are reported below as NOT RUN, by name.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
filter=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) filter=(--filter "Category!=Slow"); shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
results="$root/TestResults"
rm -rf "$results"
if ! dotnet build tests/Dynamo.Tests/Dynamo.Tests.csproj -c Release -nologo -v quiet -clp:ErrorsOnly; then
  echo "test.sh: build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
dotnet test tests/Dynamo.Tests/Dynamo.Tests.csproj -c Release --no-build -nologo \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" "${filter[@]}" "${extra[@]}"
rc=$?
# The kernels again with the wider instruction sets switched off, so that every SIMD path of this machine is
# tested, not only the widest (each path must give the scalar reference's bits): AVX-512 tiles without AVX-VNNI
# (Zen 4; the same as the main run where the CPU has no AVX-VNNI), AVX2 without AVX-512 and AVX-VNNI (Zen 3), the
# portable Vector128 path (what ARM64 runs) without AVX2, and scalar without any SIMD. (.NET 10 switches all of
# AVX-512 with DOTNET_EnableAVX512; DOTNET_EnableAVX512F no longer does. AVX-VNNI is not part of it.) Skipped when
# the main run was filtered (./test.sh -- ARGS).
isa_runs=()
if [ ${#extra[@]} -eq 0 ] && [ -f "$results/results.trx" ]; then
  for isa in DOTNET_EnableAVXVNNI "DOTNET_EnableAVX512 DOTNET_EnableAVXVNNI" DOTNET_EnableAVX2 DOTNET_EnableHWIntrinsic; do
    name=${isa// /-}
    settings=()
    for var in $isa; do settings+=("$var=0"); done
    echo "test.sh: the kernel tests again with ${settings[*]}"
    env "${settings[@]}" dotnet test tests/Dynamo.Tests/Dynamo.Tests.csproj -c Release --no-build -nologo \
      --logger "trx;LogFileName=results-$name.trx" --results-directory "$results" \
      --filter "FullyQualifiedName~Dynamo.Tests.Engine.Kernels" >"$results/$name.log" 2>&1
    isa_rc=$?
    tail -n 3 "$results/$name.log"
    if [ "$isa_rc" -ne 0 ]; then rc=$isa_rc; fi
    isa_runs+=("$results/results-$name.trx")
  done
fi
trx="$results/results.trx"
if [ ! -f "$trx" ]; then
  echo "test.sh: no test results (dotnet test exit $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
passed=0; failed=0; skipped=0
for file in "$trx" "${isa_runs[@]}"; do
  if [ ! -f "$file" ]; then failed=$(( failed + 1 )); echo "test.sh: no results in $file"; continue; fi
  counters=$(grep -o '<Counters [^>]*>' "$file" | head -n 1)
  get() { v=$(echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'); echo "${v:-0}"; }
  total=$(get total); executed=$(get executed)
  passed=$(( passed + $(get passed) ))
  failed=$(( failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted) ))
  skipped=$(( skipped + total - executed ))
done
if [ "$skipped" -gt 0 ]; then
  echo
  echo "!!! NOT RUN ($skipped tests):"
  cat "$trx" "${isa_runs[@]}" 2>/dev/null | grep -o '<UnitTestResult [^>]*outcome="NotExecuted"[^>]*>' | grep -o 'testName="[^"]*"' | sed 's/testName="\(.*\)"/!!!   \1/'
  if [ ! -d "$root/../shared/models" ] && [ -z "${DYNAMO_SHARED:-}" ]; then
    echo "!!! ../shared is absent: the tests above need its real models and oracles."
  fi
  echo
fi
if [ "$failed" -gt 0 ]; then
  # The failures again at the end, by name with the start of their messages, so that a log's tail says which
  # test failed and why (CI shows only the tail).
  echo
  echo "!!! FAILED:"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$trx" "${isa_runs[@]}" <<'PY'
import sys, xml.etree.ElementTree as ET
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"!!!   (cannot read {path}: {e})"); continue
    for r in root.iter():
        if r.tag.endswith("UnitTestResult") and r.get("outcome") == "Failed":
            print(f"!!!   {r.get('testName')}  [{path.rsplit('/', 1)[-1]}]")
            msg = next((m.text or "" for m in r.iter() if m.tag.endswith("Message")), "")
            for line in msg.strip().splitlines()[:12]:
                print(f"!!!       {line[:300]}")
PY
  else
    cat "$trx" "${isa_runs[@]}" 2>/dev/null | grep -o '<UnitTestResult [^>]*outcome="Failed"[^>]*>' | grep -o 'testName="[^"]*"' | sed 's/testName="\(.*\)"/!!!   \1/'
  fi
  echo
fi
if [ "$failed" -eq 0 ] && [ "$rc" -ne 0 ]; then failed=1; fi
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
