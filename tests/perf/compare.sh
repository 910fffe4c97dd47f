#!/usr/bin/env bash
# /perf/1.0.0 between Plait, go-libp2p and rust-libp2p on loopback (see BENCHMARKS.md, "perf
# protocol").
#
#   [REPS=3] [LAT_ITERS=20] [BYTES=268435456] [PAIRS="plait:plait ..."] tests/perf/compare.sh
#
# Starts one perf server of each kind on 127.0.0.1 and keeps it for the whole run:
#   plait   target/release/examples/perf --run-server --fixed-identity (TCP + Noise + yamux)
#   go      go-libp2p test peer -l 0 --perf --security noise --key ed25519
#   go-tls  go-libp2p test peer -l 0 --perf --security tls --key ed25519 (so the row is surely
#           TLS; its client keeps go's default order, TLS then Noise: go's default negotiation)
#   rust    target/release/libp2p_echo -l 0 --perf (rust-libp2p 0.57, TCP + Noise + yamux)
# and for each pair CLIENT:SERVER measures, with a fresh client process per run:
#   upload    BYTES up, 0 down; Gbit/s = BYTES*8 / (upload_s + download_s) as the client
#             reports them, i.e. from the first byte after the 8-byte header to the server's
#             end of stream (dial and stream negotiation not counted)
#   download  0 up, BYTES down; the same formula
#   setup     1 up, 1 down; ms from spawning the client to reading its result line: process
#             start + host construction + dial (TCP, security, muxer) + /perf/1.0.0 + 1 byte
#             each way (the client's exit is waited for but not timed)
# REPS repetitions of upload and download, LAT_ITERS of setup; within each repetition every
# pair runs once, starting from a different pair each time. Prints a Markdown table of
# median (min-max) per pair; raw figures and client errors go to $OUT (target/perf-compare).
# A failed run is recorded with its cause, never as a figure.
# Clients: the Plait perf example (its stderr line `upload N bytes in X s ..., download ...`),
# the go peer's control protocol (`dial ADDR`, `perf PEER UP DOWN` -> `ok UP_S DOWN_S`; `go`
# with --security noise, `go-tls` with the default), `libp2p_echo --perf-client`. All
# identities are Ed25519.
# Needs: target/release/examples/perf (cargo build --release -p plait-tokio --example perf)
#        target/release/libp2p_echo   (cargo build --release -p plait-tests --bin libp2p_echo)
#        the go-libp2p test peer (GO_PEER, default target/test-peers/go-peer: built by the
#        interop tests, or `cd tests/peers/go && go build -o ../../../target/test-peers/go-peer .`)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
LAT_ITERS=${LAT_ITERS:-20}
BYTES=${BYTES:-268435456}
PAIRS=${PAIRS:-plait:plait plait:go go:plait go:go go-tls:go-tls plait:rust rust:plait rust:rust}
OUT=${OUT:-target/perf-compare}
PLAIT=target/release/examples/perf
RUST=target/release/libp2p_echo
GO=${GO_PEER:-target/test-peers/go-peer}
LIMIT=120   # seconds any one client run may take
for b in "$PLAIT" "$RUST" "$GO"; do
  [ -x "$b" ] || { echo "missing $b (see the header of $0)" >&2; exit 2; }
done
mkdir -p "$OUT"
RAW=$OUT/raw.tsv      # pair  metric  iteration  value|FAIL  detail
ERRS=$OUT/client.err  # stderr of the current client run
: >"$RAW"

SERVERS=()
cleanup() { for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start_server NAME CMD...: runs CMD, waits for a /ip4/.../p2p/ID address in its stdout or
# stderr, stores it in ADDR_NAME.
start_server() {
  local name=$1; shift
  "$@" >"$OUT/server-$name.out" 2>"$OUT/server-$name.err" &
  SERVERS+=($!)
  local addr=
  for _ in $(seq 100); do
    addr=$(grep -ho '/ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' "$OUT/server-$name.out" \
      "$OUT/server-$name.err" 2>/dev/null | head -1 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$name server did not start:" >&2; cat "$OUT/server-$name.err" >&2; exit 1; }
  printf -v "ADDR_${name//-/_}" %s "$addr"
  echo "server $name: $addr" >&2
}
start_server plait "$PLAIT" --run-server --server-address 127.0.0.1:0 --fixed-identity
start_server go "$GO" -l 0 --perf --security noise --key ed25519
start_server go_tls "$GO" -l 0 --perf --security tls --key ed25519
start_server rust "$RUST" -l 0 --perf

# client KIND ADDR UP DOWN: one run, stdout only what the client prints (its stderr in $ERRS).
client() {
  local kind=$1 addr=$2 up=$3 down=$4
  case $kind in
    plait) timeout $LIMIT "$PLAIT" --server-address "$addr" --transport tcp \
             --upload-bytes "$up" --download-bytes "$down" 2>"$ERRS" ;;
    go|go-tls)
      local sec=(--security noise); [ "$kind" = go-tls ] && sec=()
      printf 'dial %s\nperf %s %s %s\nquit\n' "$addr" "${addr##*/p2p/}" "$up" "$down" |
        timeout $LIMIT "$GO" --control "${sec[@]}" --key ed25519 2>"$ERRS" ;;
    rust) timeout $LIMIT "$RUST" --perf-client "$addr" --upload-bytes "$up" \
            --download-bytes "$down" 2>"$ERRS" ;;
  esac
}

# seconds KIND < OUTPUT: "UPLOAD_S DOWNLOAD_S" from a client's output (Plait: from $ERRS).
seconds() {
  case $1 in
    plait) sed -nE 's/^upload [0-9]+ bytes in ([0-9.]+) s .* download [0-9]+ bytes in ([0-9.]+) s .*/\1 \2/p' "$ERRS" ;;
    go|go-tls) sed -nE 's/^ok ([0-9.]+) ([0-9.]+)$/\1 \2/p' ;;
    rust) grep -E '^[0-9.]+ [0-9.]+$' ;;
  esac
}

# why: the cause of a failed run, on one line.
why() {
  local msg
  msg=$(grep -hE '^err |error|failed|rror:' "$OUT/last.out" "$ERRS" 2>/dev/null | tail -1 || true)
  [ -n "$msg" ] || msg=$(tail -1 "$ERRS" 2>/dev/null || true)
  echo "${msg:-no output}" | tr '\t' ' ' | cut -c1-200
}

server_addr() { local v="ADDR_${1//-/_}"; echo "${!v}"; }

# throughput PAIR METRIC ITER UP DOWN
throughput() {
  local cl=${1%%:*} sv=${1##*:} t status=0
  client "$cl" "$(server_addr "$sv")" "$4" "$5" >"$OUT/last.out" || status=$?
  t=$(seconds "$cl" <"$OUT/last.out" | head -1 || true)
  if [ $status -eq 0 ] && [ -n "$t" ]; then
    awk -v b="$BYTES" -v t="$t" -v p="$1" -v m="$2" -v i="$3" 'BEGIN {
      split(t, s, " "); printf "%s\t%s\t%s\t%.3f\tup %ss down %ss\n", p, m, i, b * 8 / (s[1] + s[2]) / 1e9, s[1], s[2] }' >>"$RAW"
  else
    printf '%s\t%s\t%s\tFAIL\texit %s: %s\n' "$1" "$2" "$3" "$status" "$(why)" >>"$RAW"
  fi
}

# setup PAIR ITER: spawn -> result line, in ms.
setup() {
  local cl=${1%%:*} sv=${1##*:} t0 t1= line fd pid status=0
  local pattern='^[0-9.]+ [0-9.]+$'
  case $cl in plait) pattern='"type":"final"' ;; go|go-tls) pattern='^ok [0-9.]+ [0-9.]+$' ;; esac
  : >"$OUT/last.out"
  t0=$EPOCHREALTIME
  exec {fd}< <(client "$cl" "$(server_addr "$sv")" 1 1)
  pid=$!
  while IFS= read -r -u "$fd" line; do
    echo "$line" >>"$OUT/last.out"
    if [[ $line =~ $pattern ]]; then t1=$EPOCHREALTIME; break; fi
  done
  cat <&"$fd" >>"$OUT/last.out" || true
  exec {fd}<&-
  wait "$pid" || status=$?
  if [ $status -eq 0 ] && [ -n "$t1" ]; then
    awk -v a="$t0" -v b="$t1" -v p="$1" -v i="$2" 'BEGIN { printf "%s\tsetup\t%s\t%.2f\t\n", p, i, (b - a) * 1000 }' >>"$RAW"
  else
    printf '%s\tsetup\t%s\tFAIL\texit %s: %s\n' "$1" "$2" "$status" "$(why)" >>"$RAW"
  fi
}

read -ra P <<<"$PAIRS"
n=${#P[@]}
# rotated I: the pairs starting from pair I mod n.
rotated() { local k; for ((k = 0; k < n; k++)); do echo "${P[($1 + k) % n]}"; done; }

started=$SECONDS
echo "load average at start: $(cut -d" " -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= REPS; r++)); do
  echo "repetition $r/$REPS: upload, download" >&2
  for pair in $(rotated $((r - 1))); do throughput "$pair" upload "$r" "$BYTES" 0; done
  for pair in $(rotated $((r - 1))); do throughput "$pair" download "$r" 0 "$BYTES"; done
done
echo "set-up + 1-byte round trip, $LAT_ITERS iterations" >&2
for ((i = 1; i <= LAT_ITERS; i++)); do
  for pair in $(rotated $((i - 1))); do setup "$pair" "$i"; done
done
for p in "${SERVERS[@]}"; do
  kill -0 "$p" 2>/dev/null || echo "a server (pid $p) died during the run; see $OUT/server-*.err" >&2
done
echo "done in $((SECONDS - started)) s; load average at end: $(cut -d" " -f1-3 /proc/loadavg); raw figures in $RAW" >&2

python3 - "$RAW" "$PAIRS" "$BYTES" <<'EOF'
import statistics, sys
raw, pairs, size = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
names = {"plait": "Plait", "go": "go (Noise)", "go-tls": "go (TLS)", "rust": "rust-libp2p"}
def cell(pair, metric, digits):
    got = [r for r in rows if r[0] == pair and r[1] == metric]
    ok = [float(r[3]) for r in got if r[3] != "FAIL"]
    bad = [r[4] for r in got if r[3] == "FAIL"]
    if not ok:
        return f"failed ({len(bad)}/{len(got)}): {bad[0] if bad else 'not run'}"
    text = f"{statistics.median(ok):.{digits}f} ({min(ok):.{digits}f}–{max(ok):.{digits}f})"
    return text + (f", {len(bad)}/{len(got)} failed: {bad[0]}" if bad else "")
print(f"| client → server | upload Gbit/s ({size >> 20} MiB) | download Gbit/s ({size >> 20} MiB) | set-up + 1-byte ms |")
print("|---|---|---|---|")
for p in pairs:
    c, s = p.split(":")
    print(f"| {names[c]} → {names[s]} | {cell(p, 'upload', 2)} | {cell(p, 'download', 2)} | {cell(p, 'setup', 1)} |")
EOF
