#!/usr/bin/env bash
# Connection set-up in round trips over a delayed link (see BENCHMARKS.md, "Round trips").
#
#   [PAIRS="plait:plait ..."] tests/rtt/measure.sh [RUNS] [DELAY_MS]   (root; default: the four
#   plait/libp2p dialer:listener pairs, 5 runs, 25 ms per direction; also go and js)
#
# Creates network namespaces rtt-a (dialer, 10.200.0.1) and rtt-b (listener, 10.200.0.2), links
# them with /work/shared/tools/tun-delay.py (user-space delay; this kernel has no sch_netem),
# and for each pair dialer -> listener (plait/rust-libp2p) runs the echo dialer RUNS times.
# TUNLOG records every TCP segment as it enters the link; tests/rtt/analyze.py turns each run
# into "first SYN leaves the dialer -> first byte of the echo reply reaches the dialer".
# Needs: target/release/examples/echo (cargo build --release -p plait-tokio --example echo)
#        target/release/libp2p_echo   (cargo build --release -p plait-tests --bin libp2p_echo)
#        for go: the go-libp2p test peer (GO_PEER, default target/test-peers/go-peer: built by
#        the interop tests, or `cd tests/peers/go && go build -o ../../../target/test-peers/go-peer .`)
#        for js: `npm ci` in tests/peers/js (run with node)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
DELAY=${2:-25}
TUN=${TUN_DELAY:-/work/shared/tools/tun-delay.py}
OUT=${OUT:-target/rtt}
PLAIT=target/release/examples/echo
LIBP2P=target/release/libp2p_echo
A=rtt-a B=rtt-b
mkdir -p "$OUT"

FWD= LST=
cleanup() {
  [ -n "$LST" ] && kill "$LST" 2>/dev/null && wait "$LST" 2>/dev/null || true
  [ -n "$FWD" ] && kill "$FWD" 2>/dev/null && wait "$FWD" 2>/dev/null || true
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add $A && ip netns add $B
ip -n $A link set lo up && ip -n $B link set lo up

GO=${GO_PEER:-target/test-peers/go-peer}
# The command of each peer (word-split on purpose: js is `node FILE`).
bin() {
  case $1 in
    plait) echo "$PLAIT" ;;             # its default security: Noise, then TLS
    plait-noise) echo "$PLAIT --noise" ;;
    plait-tls) echo "$PLAIT --tls" ;;
    libp2p) echo "$LIBP2P" ;;
    go) echo "$GO" ;;
    js) echo "node tests/peers/js/peer.mjs" ;;
    *) echo "unknown peer $1" >&2; exit 2 ;;
  esac
}

for pair in ${PAIRS:-plait:plait libp2p:libp2p plait:libp2p libp2p:plait}; do
  dialer=${pair%%:*} listener=${pair##*:}
  log="$OUT/$dialer-to-$listener.tunlog"
  : >"$log"
  TUNLOG="$log" python3 "$TUN" $A $B "$DELAY" >"$OUT/fwd.out" 2>&1 &
  FWD=$!
  until grep -q READY "$OUT/fwd.out" 2>/dev/null; do sleep 0.1; done
  rm -f "$OUT/listener.out"   # no stale address (peer id) from the previous listener
  # shellcheck disable=SC2046
  ip netns exec $B $(bin "$listener") -l 4001 --host 10.200.0.2 >"$OUT/listener.out" 2>/dev/null &
  LST=$!
  addr=
  for _ in $(seq 100); do
    addr=$(grep -o '/ip4/10.200.0.2/tcp/4001/p2p/[A-Za-z0-9]*' "$OUT/listener.out" 2>/dev/null | head -1 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$listener listener did not start" >&2; exit 1; }
  for run in $(seq "$RUNS"); do
    # shellcheck disable=SC2046
    reply=$(ip netns exec $A $(bin "$dialer") -d "$addr" 2>/dev/null || true)
    case $reply in *"Hello, world!"*) ;; *) echo "$dialer -> $listener run $run: no echo ('$reply')" >&2 ;; esac
    sleep 1.5   # let the connection close before the next run's SYN
  done
  kill "$LST"; wait "$LST" 2>/dev/null || true; LST=
  sleep 1   # the next listener binds the same port
  kill "$FWD"; wait "$FWD" 2>/dev/null || true; FWD=
  python3 tests/rtt/analyze.py "$DELAY" "$dialer -> $listener" "$log"
done
