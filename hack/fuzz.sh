#!/usr/bin/env bash
# Runs every native Go fuzz target of every module, one after another, each
# for FUZZTIME (default 2m). `make test` runs only their seed corpora; this
# is the longer search to run before a change to a decoder or parser lands.
#
#   hack/fuzz.sh                     every target, 2m each
#   FUZZTIME=30s hack/fuzz.sh        shorter
#   hack/fuzz.sh Frontmatter Untar   only targets whose name matches one of these
#
# A crash is written by go test into the package's testdata/fuzz/<Target>/
# as a new seed (commit it with the fix). NICE (default 10) keeps the search
# from starving other work on the machine; FUZZ_PARALLEL (default: all
# cores) sets go test -parallel. A summary with each target's executions
# and new corpus entries is printed at the end; exit 1 if any target failed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
fuzztime=${FUZZTIME:-2m}
nice=${NICE:-10}
parallel=${FUZZ_PARALLEL:-$(nproc)}
log() { printf '[fuzz] %s\n' "$*" >&2; }

# Every "func FuzzX(" in a _test.go file under the modules, as
# module<TAB>package dir<TAB>target.
targets=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' api services test hack/tools 2>/dev/null |
  sed -E 's/:func (Fuzz[A-Za-z0-9_]*)\($/\t\1/' | sort -u |
  while IFS=$'\t' read -r file name; do
    dir=$(dirname "$file")
    mod=$dir
    while [ ! -f "$mod/go.mod" ]; do mod=$(dirname "$mod"); done
    printf '%s\t%s\t%s\n' "$mod" "./${dir#"$mod"/}" "$name"
  done)
if [ $# -gt 0 ]; then
  pattern=$(IFS='|'; echo "$*")
  targets=$(grep -E "	Fuzz[A-Za-z0-9_]*($pattern)[A-Za-z0-9_]*$" <<<"$targets" || true)
fi
[ -n "$targets" ] || { log "no fuzz target matches"; exit 1; }
total=$(wc -l <<<"$targets")
log "$total targets, $fuzztime each (nice $nice, -parallel $parallel)"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
summary=() failed=0 i=0
while IFS=$'\t' read -r mod pkg name; do
  i=$((i + 1))
  log "$i/$total $mod $pkg $name"
  status=0
  (cd "$mod" && nice -n "$nice" go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" \
    -parallel="$parallel" "$pkg") >"$out/log" 2>&1 || status=$?
  # The last progress line: "fuzz: elapsed: 2m0s, execs: 123456 (1029/sec), new interesting: 3 (total: 40)".
  last=$(grep -E '^fuzz: elapsed' "$out/log" | tail -n 1 | sed -E 's/^fuzz: elapsed: [^,]*, //')
  if [ $status -eq 0 ]; then
    summary+=("ok    $mod $pkg $name: ${last:-no progress line}")
  else
    failed=1
    summary+=("FAIL  $mod $pkg $name")
    tail -n 40 "$out/log" >&2
  fi
done <<<"$targets"
printf '%s\n' "${summary[@]}"
exit $failed
