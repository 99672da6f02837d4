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
trx="$results/results.trx"
if [ ! -f "$trx" ]; then
  echo "test.sh: no test results (dotnet test exit $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
passed=$(get passed); failed=$(get failed); total=$(get total); executed=$(get executed)
errors=$(get error); timeout=$(get timeout); aborted=$(get aborted)
failed=$(( ${failed:-0} + ${errors:-0} + ${timeout:-0} + ${aborted:-0} ))
skipped=$(( ${total:-0} - ${executed:-0} ))
if [ "$skipped" -gt 0 ]; then
  echo
  echo "!!! NOT RUN ($skipped tests):"
  grep -o '<UnitTestResult [^>]*outcome="NotExecuted"[^>]*>' "$trx" | grep -o 'testName="[^"]*"' | sed 's/testName="\(.*\)"/!!!   \1/'
  if [ ! -d "$root/../shared/models" ] && [ -z "${DYNAMO_SHARED:-}" ]; then
    echo "!!! ../shared is absent: the tests above need its real models and oracles."
  fi
  echo
fi
if [ "$failed" -eq 0 ] && [ "$rc" -ne 0 ]; then failed=1; fi
if [ "$skipped" -gt 0 ]; then
  echo "${passed:-0} passed, $failed failed, $skipped skipped"
else
  echo "${passed:-0} passed, $failed failed"
fi
[ "$failed" -eq 0 ]
