#!/usr/bin/env bash
# Foundation figures: binary size, start-up time, idle RSS, and /healthz
# throughput of careloop next to a bare Gin handler, both measured with wrk
# (apt-get install wrk) in the same run on loopback. Bounded: 2 x 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$out/careloop" .
go build -o "$out/baregin" ./bench/baregin
echo "binary size: $(du -h "$out/careloop" | cut -f1) ($(stat -c %s "$out/careloop") bytes, stripped, CGO off)"

start=$(date +%s%N)
CARELOOP_ADDR=127.0.0.1:18180 CARELOOP_DATA_DIR="$out/data" CARELOOP_LOG_LEVEL=warn "$out/careloop" serve >"$out/careloop.log" 2>&1 &
pid=$!
until curl -sf 127.0.0.1:18180/healthz >/dev/null; do sleep 0.005; done
echo "start-up to first 200 from /healthz (fresh SQLite, migrate, seed): $(( ($(date +%s%N) - start) / 1000000 )) ms"
sleep 2
echo "idle RSS: $(( $(awk '/VmRSS/{print $2}' /proc/$pid/status) / 1024 )) MiB"

"$out/baregin" -addr 127.0.0.1:18181 &
until curl -sf 127.0.0.1:18181/healthz >/dev/null; do sleep 0.005; done

threads=${THREADS:-2} conns=${CONNS:-64} dur=${DURATION:-10s}
echo "wrk -t$threads -c$conns -d$dur"
c=$(wrk -t"$threads" -c"$conns" -d"$dur" http://127.0.0.1:18180/healthz | awk '/Requests\/sec/{print $2}')
b=$(wrk -t"$threads" -c"$conns" -d"$dur" http://127.0.0.1:18181/healthz | awk '/Requests\/sec/{print $2}')
echo "careloop /healthz: $c req/s"
echo "bare gin /healthz: $b req/s"
echo "ratio: $(awk -v c="$c" -v b="$b" 'BEGIN{printf "%.2f", c/b}')"
echo "RSS after load: $(( $(awk '/VmRSS/{print $2}' /proc/$pid/status) / 1024 )) MiB"
