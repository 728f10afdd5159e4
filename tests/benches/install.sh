#!/usr/bin/env bash
# Install benchmark: artifact sizes (aim: each .deb <= 15 MB, binaries <= 30 MB), the agent's
# idle RSS once connected (aim: <= 20 MB) and `lifeboat-agent doctor` wall time on a configured,
# enrolled agent (aim: <= 2 s without network waits).
#
# Usage (as root): tests/benches/install.sh [DIST]
#   DIST: the output of scripts/package (default dist/; built with scripts/package if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIST="${1:-$ROOT/dist}"
[ -f "$DIST/SHA256SUMS" ] || "$ROOT/scripts/package" --out "$DIST"
AGENT="$DIST/lifeboat-agent"
COORDINATOR="$DIST/lifeboat-coordinator"
mb() { python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1])/1e6:.1f} MB')" "$1"; }

echo "== artifact sizes"
for file in "$DIST"/*.deb "$AGENT" "$COORDINATOR"; do
  printf '%-60s %s\n' "$(basename "$file")" "$(mb "$file")"
done
for name in lifeboat-agent lifeboat-coordinator; do
  [ -f "$ROOT/target/release/$name" ] && printf '%-60s %s\n' "target/release/$name (unstripped)" "$(mb "$ROOT/target/release/$name")"
done

WORK="$(mktemp -d)"; chmod 755 "$WORK"
cleanup() { kill "${AGENT_PID:-}" "${COORD_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC="$(port)"; HTTP="$(port)"
cat > "$WORK/coordinator.toml" <<TOML
listen = "127.0.0.1:$GRPC"
http_listen = "127.0.0.1:$HTTP"
data_dir = "$WORK/coordinator"
server_names = ["127.0.0.1"]
TOML
"$COORDINATOR" serve --config "$WORK/coordinator.toml" > "$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && break; sleep 0.1; done
CREATED="$("$COORDINATOR" token create --config "$WORK/coordinator.toml" --environment bench --output json)"
TOKEN="$(echo "$CREATED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
PIN="$(echo "$CREATED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ca_pin"])')"
"$AGENT" enroll --coordinator "https://127.0.0.1:$GRPC" --token "$TOKEN" --ca-pin "$PIN" \
  --identity-dir "$WORK/identity" > /dev/null

mkdir -p "$WORK/app" "$WORK/backups"
sqlite3 "$WORK/app/app.sqlite" "create table t(x); insert into t values (1), (2), (3);"
cp "$WORK/app/app.sqlite" "$WORK/backups/app-1.sqlite"
chmod -R o+rX "$WORK"
cat > "$WORK/agent.toml" <<TOML
[agent]
coordinator = "https://127.0.0.1:$GRPC"
identity_dir = "$WORK/identity"
work_dir = "$WORK/work"

[[asset]]
name = "app"
kind = "sqlite"
path = "$WORK/app/app.sqlite"

[[backup]]
name = "app-nightly"
asset = "app"
kind = "sqlite_dir"
path = "$WORK/backups"

[[test]]
asset = "app"
schedule = "0 0 1 1 *"

  [[test.check]]
  name = "three rows"
  sql = "select count(*) = 3 from t"

[scan]
interval = "1h"
TOML

echo "== agent idle RSS (connected, its first posture scan done, no drill running)"
"$AGENT" run --config "$WORK/agent.toml" > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
sleep 15
for second in 1 2 3; do
  printf 'after %2d s: %s\n' "$((15 + second * 5 - 5))" "$(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$AGENT_PID/status")"
  sleep 5
done
awk '/VmHWM/ {printf "peak RSS: %.1f MB\n", $2/1024}' "/proc/$AGENT_PID/status"

echo "== doctor wall time (5 runs; the coordinator on 127.0.0.1)"
for run in 1 2 3 4 5; do
  start=$(date +%s%N)
  "$AGENT" doctor --config "$WORK/agent.toml" > "$WORK/doctor.txt" || { cat "$WORK/doctor.txt"; exit 1; }
  end=$(date +%s%N)
  echo "run $run: $(( (end - start) / 1000000 )) ms"
done
tail -1 "$WORK/doctor.txt"
