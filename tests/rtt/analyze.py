#!/usr/bin/env python3
"""Turns a tun-delay.py TUNLOG into per-run connection set-up times (see tests/rtt/measure.sh).

  analyze.py DELAY_MS LABEL TUNLOG [--flights N]

A run starts at a pure SYN from A (the dialer). Its end is the dialer's first FIN/RST (the
dialer exits once it has the echo reply). The echo reply is the last B>A flight carrying data
that reached the dialer (log time + DELAY_MS) before that FIN/RST left it; we report the
arrival of its first segment minus the SYN's departure. A flight is a maximal sequence of
segments in one direction with payload or SYN/FIN flags (pure ACKs are listed but never split
or form flights). --flights N prints the flight-by-flight listing of run N (1-based).
"""
import sys


def runs(path):
    out, cur = [], None
    for line in open(path):
        t, d, *rest = line.split()
        flags, n = (rest[0], int(rest[1])) if len(rest) == 2 else ("", int(rest[0]))
        seg = (float(t), d, flags, n)
        if d == "A>B" and flags == "S" and (cur is None or seg[0] - cur[0][0] > 1000):
            cur = [seg]
            out.append(cur)
        elif cur is not None:
            cur.append(seg)
    return out


def analyze(run, delay):
    t0 = run[0][0]
    close = next((s for s in run if s[1] == "A>B" and ("F" in s[2] or "R" in s[2])), None)
    end = close[0] if close else float("inf")
    segs = [s for s in run if s[0] <= end]
    flights = []
    for s in segs:
        if s[3] == 0 and not set(s[2]) & set("SF"):
            continue  # pure ACK
        if flights and flights[-1][0][1] == s[1]:
            flights[-1].append(s)
        else:
            flights.append([s])
    reply = None
    for i, f in enumerate(flights):
        if f[0][1] == "B>A" and any(s[3] for s in f) and f[0][0] + delay <= end + 0.5:
            reply = i
    if reply is None:
        return None, flights, segs
    first = next(s for s in flights[reply] if s[3])
    return (first[0] + delay - t0, reply + 1), flights, segs


def main():
    delay, label, path = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    show = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--flights" else None
    rtt = 2 * delay
    results = []
    for i, run in enumerate(runs(path), 1):
        res, flights, segs = analyze(run, delay)
        if res is None:
            print(f"{label} run {i}: no reply found")
            continue
        ms, nflights = res
        results.append(ms)
        print(f"{label} run {i}: {ms:6.1f} ms = {ms / rtt:.2f} RTT ({nflights} flights to the reply)")
        if show == i:
            t0 = run[0][0]
            print(f"  flight-by-flight (ms after the SYN left the dialer; +{delay:g} ms to arrive):")
            for k, f in enumerate(flights, 1):
                desc = " ".join(f"{s[2] or '-'}:{s[3]}" for s in f)
                print(f"  {k:2} {f[0][1]} {f[0][0] - t0:7.1f}  {desc}")
    if results:
        results.sort()
        med = results[len(results) // 2]
        print(f"{label}: n={len(results)} min {results[0]:.1f} median {med:.1f} max {results[-1]:.1f} ms"
              f" = {round(med / rtt)} RTT (median {med / rtt:.2f})")


if __name__ == "__main__":
    main()
