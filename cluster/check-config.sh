#!/usr/bin/env bash
# Checks the deployment files in cluster/: they parse, they agree with each
# other, and they agree with engine/config.py. It uses whatever tools exist: a
# Python (the repo's .venv first, then python3; PyYAML if installed) and
# systemd-analyze. Without Python, only grep-level checks run.
#
# Usage:
#   cluster/check-config.sh            check the examples in this checkout
#   cluster/check-config.sh --strict   placeholders (<...>, CHANGE_ME) count as errors;
#                                      use this on rendered files on a node, e.g.
#   SIEVE_ENV=/etc/sieve/sieve.env RAY_ENV=/etc/sieve/ray.env \
#   SCYLLA_YAML=/etc/scylla/scylla.yaml RACKDC=/etc/scylla/cassandra-rackdc.properties \
#   CITY=/etc/sieve/city.toml cluster/check-config.sh --strict
# PYTHON=/path/to/python picks the interpreter (default: .venv/bin/python, then python3).
# Exit status: 0 when no check failed (warnings allowed), 1 otherwise.

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
STRICT=0
[[ "${1:-}" == "--strict" ]] && STRICT=1

SIEVE_ENV="${SIEVE_ENV:-$HERE/ray/sieve.env.example}"
RAY_ENV="${RAY_ENV:-$HERE/ray/ray.env.example}"
SCYLLA_YAML="${SCYLLA_YAML:-$HERE/scylla/scylla.yaml}"
RACKDC="${RACKDC:-$HERE/scylla/cassandra-rackdc.properties}"
KEYSPACE_CQL="${KEYSPACE_CQL:-$HERE/scylla/keyspace.cql}"
CITY="${CITY:-$ROOT/config/tianjin.toml}"
CONFIG_PY="$ROOT/engine/config.py"
UNITS=("$HERE/ray/ray-head.service" "$HERE/ray/ray-worker.service" "$HERE/ray/sieve-gateway.service")

failures=0
warnings=0
ok()   { printf 'ok    %s\n' "$*"; }
warn() { printf 'WARN  %s\n' "$*"; warnings=$((warnings + 1)); }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures + 1)); }

PY="${PYTHON:-}"   # PYTHON=/path/to/python overrides the choice below
if [[ -z "$PY" ]]; then
  for candidate in "$ROOT/.venv/bin/python" python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
if [[ -n "$PY" ]] && ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
  warn "Python '$PY' does not run (or is older than 3.8): Python checks skipped"
  PY=""
fi

# --- files exist ------------------------------------------------------------
for f in "$SIEVE_ENV" "$RAY_ENV" "$SCYLLA_YAML" "$RACKDC" "$KEYSPACE_CQL" "$CONFIG_PY" "${UNITS[@]}"; do
  [[ -f "$f" ]] || fail "missing file: $f"
done
((failures)) && { echo "missing files; stopping"; exit 1; }

# --- placeholders -----------------------------------------------------------
for f in "$SIEVE_ENV" "$RAY_ENV" "$SCYLLA_YAML" "$KEYSPACE_CQL"; do
  hits=$(grep -v '^[[:space:]]*\(#\|--\)' "$f" | grep -c -E '<[A-Z0-9_]+>|CHANGE_ME' || true)
  if ((hits)); then
    if ((STRICT)); then fail "$f: $hits line(s) still hold placeholders"; else ok "$f: $hits placeholder line(s) (expected in examples)"; fi
  fi
done

# --- DC names: rackdc, keyspace, env ------------------------------------------
ks_dcs=$(grep -o "'[a-z_]*': *3" "$KEYSPACE_CQL" | grep -o "^'[a-z_]*'" | tr -d "'" | sort -u | tr '\n' ' ')
if [[ "$ks_dcs" == "bare_metal gov_cloud " ]]; then ok "keyspace.cql: RF 3 in gov_cloud and bare_metal"; else fail "keyspace.cql: expected RF 3 for gov_cloud and bare_metal, found: ${ks_dcs:-nothing}"; fi
grep -q "NetworkTopologyStrategy" "$KEYSPACE_CQL" || fail "keyspace.cql: not NetworkTopologyStrategy"
grep -q "durable_writes = true" "$KEYSPACE_CQL" || fail "keyspace.cql: durable_writes = true missing"
grep -qi "GRANT .* ON KEYSPACE sieve TO sieve_engine" "$KEYSPACE_CQL" || fail "keyspace.cql: no grants for sieve_engine"
if grep -qiE "GRANT (ALL|DROP|AUTHORIZE)" "$KEYSPACE_CQL"; then fail "keyspace.cql: grants more than needed"; fi

rack_dc=$(grep -E '^[[:space:]]*dc=' "$RACKDC" | head -1 | cut -d= -f2 | tr -d '[:space:]')
rack_rack=$(grep -E '^[[:space:]]*rack=' "$RACKDC" | head -1 | cut -d= -f2 | tr -d '[:space:]')
case " $ks_dcs" in
  *" $rack_dc "*) ok "cassandra-rackdc.properties: dc=$rack_dc rack=$rack_rack" ;;
  *) fail "cassandra-rackdc.properties: dc='$rack_dc' is not a DC of keyspace.cql" ;;
esac
[[ -n "$rack_rack" ]] || fail "cassandra-rackdc.properties: no rack="

# --- env files: syntax as systemd reads it ----------------------------------
check_env_syntax() {
  local file="$1" n=0 line
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*[#\;] ]] && continue
    if [[ ! "$line" =~ ^[A-Z_][A-Z0-9_]*= ]]; then fail "$file:$n: not KEY=VALUE: $line"; continue; fi
    local value="${line#*=}"
    if [[ ! "$value" =~ ^\" && "$value" =~ [[:space:]] ]]; then fail "$file:$n: unquoted value with spaces"; fi
    if [[ ! "$value" =~ ^\" && "$value" == *"#"* ]]; then fail "$file:$n: inline comment becomes part of the value"; fi
  done <"$file"
}
check_env_syntax "$SIEVE_ENV"
check_env_syntax "$RAY_ENV"

env_get() {  # env_get FILE KEY -> value with surrounding double quotes removed
  local v
  v=$(grep -E "^$2=" "$1" | tail -1 | cut -d= -f2-)
  v="${v#\"}"; printf '%s' "${v%\"}"
}

# --- every Settings field is in sieve.env, nothing unknown --------------------
fields=$(sed -n '/^class Settings/,/^    @classmethod/p' "$CONFIG_PY" \
  | grep -E '^    [a-z_]+: [^=]+ = ' | sed -E 's/^    ([a-z_]+):.*/\1/' | tr 'a-z' 'A-Z' | sed 's/^/SIEVE_/' | sort)
extra_known=$'SIEVE_LOG_JSON\nSIEVE_LOG_LEVEL'
present=$(grep -oE '^SIEVE_[A-Z0-9_]+' "$SIEVE_ENV" | sort -u)
missing=$(comm -23 <(echo "$fields") <(echo "$present"))
unknown=$(comm -13 <(printf '%s\n%s\n' "$fields" "$extra_known" | sort) <(echo "$present"))
[[ -z "$fields" ]] && fail "could not read the Settings fields from $CONFIG_PY"
if [[ -z "$missing" ]]; then ok "sieve.env: all $(echo "$fields" | wc -l) Settings fields present"; else fail "sieve.env: missing $(echo $missing)"; fi
[[ -z "$unknown" ]] || fail "sieve.env: not engine settings: $(echo $unknown)"

# --- production values and cross-file agreement -----------------------------
[[ "$(env_get "$SIEVE_ENV" SIEVE_CQL_CREATE_KEYSPACE)" =~ ^(false|0|no|off)$ ]] \
  && ok "SIEVE_CQL_CREATE_KEYSPACE is false" || fail "SIEVE_CQL_CREATE_KEYSPACE must be false in production"
local_dc=$(env_get "$SIEVE_ENV" SIEVE_CQL_LOCAL_DC)
case " $ks_dcs" in *" $local_dc "*) ok "SIEVE_CQL_LOCAL_DC=$local_dc is a keyspace DC" ;; *) fail "SIEVE_CQL_LOCAL_DC='$local_dc' is not a DC of keyspace.cql" ;; esac
repl_dcs=$(env_get "$SIEVE_ENV" SIEVE_CQL_REPLICATION | grep -o "'[a-z_]*': *3" | grep -o "^'[a-z_]*'" | tr -d "'" | sort -u | tr '\n' ' ')
[[ "$repl_dcs" == "$ks_dcs" ]] || warn "SIEVE_CQL_REPLICATION differs from keyspace.cql ($repl_dcs vs $ks_dcs)"
ray_addr=$(env_get "$SIEVE_ENV" SIEVE_RAY_ADDRESS)
head_port=$(grep -oE -- '--port=[0-9]+' "$HERE/ray/ray-head.service" | cut -d= -f2)
if [[ -z "$ray_addr" ]]; then fail "SIEVE_RAY_ADDRESS is empty: each gateway would start a private Ray"
elif [[ "${ray_addr##*:}" != "$head_port" ]]; then fail "SIEVE_RAY_ADDRESS port ${ray_addr##*:} != head --port=$head_port"
else ok "SIEVE_RAY_ADDRESS=$ray_addr matches the head port"; fi
[[ "$(env_get "$SIEVE_ENV" SIEVE_GATEWAY_HOST)" =~ ^(127\.|localhost) ]] && fail "SIEVE_GATEWAY_HOST is loopback: the load balancer cannot reach it"
[[ "$(env_get "$SIEVE_ENV" SIEVE_CQL_PORT)" == "$(grep -E '^native_transport_port:' "$SCYLLA_YAML" | awk '{print $2}')" ]] \
  || fail "SIEVE_CQL_PORT differs from native_transport_port in scylla.yaml"
for var in CLUSTER_NODE_IP CLUSTER_RAY_NUM_CPUS CLUSTER_RAY_NUM_GPUS; do
  grep -qE "^$var=" "$RAY_ENV" || fail "ray.env: $var missing (used by the units)"
done
grep -qE '^CLUSTER_SHARD_HOSTS=[0-9]+$' "$SIEVE_ENV" || fail "sieve.env: CLUSTER_SHARD_HOSTS=<N> missing"

# --- systemd units ------------------------------------------------------------
gw="$HERE/ray/sieve-gateway.service"
for want in 'Restart=always' 'KillSignal=SIGTERM' 'EnvironmentFile=/etc/sieve/sieve.env' 'sieve gateway --hosts'; do
  grep -q -- "$want" "$gw" || fail "sieve-gateway.service: '$want' missing"
done
stop_s=$(grep -oE '^TimeoutStopSec=[0-9]+' "$gw" | cut -d= -f2)
call_s=$(env_get "$SIEVE_ENV" SIEVE_SHARD_CALL_TIMEOUT_S); call_s=${call_s%%.*}
if [[ -n "$stop_s" && -n "$call_s" ]] && ((stop_s >= 5 + call_s + 10)); then
  ok "TimeoutStopSec=$stop_s covers 5 s grace + ${call_s} s shard calls + Ray shutdown"
else fail "TimeoutStopSec (${stop_s:-unset}) too short for 5 s grace + SIEVE_SHARD_CALL_TIMEOUT_S (${call_s:-?}) + 10 s"; fi
ports() { grep -oE -- '--(node-manager|object-manager|runtime-env-agent|dashboard-agent-grpc|dashboard-agent-listen|metrics-export|min-worker|max-worker)-port=[0-9]+' "$1" | sort | tr '\n' ' '; }
[[ "$(ports "$HERE/ray/ray-head.service")" == "$(ports "$HERE/ray/ray-worker.service")" ]] \
  && ok "head and worker units pin the same Ray ports" || fail "head and worker units pin different Ray ports"
if command -v systemd-analyze >/dev/null 2>&1; then
  for unit in "${UNITS[@]}"; do
    # Template paths (/opt/sieve, /etc/sieve) need not exist on the machine running this check.
    out=$(systemd-analyze verify "$unit" 2>&1 | grep -vE "(/opt/sieve/\S+ is not executable|/etc/sieve/\S+).*No such file" | grep -v '^$' || true)
    if [[ -z "$out" ]]; then ok "systemd-analyze verify $(basename "$unit")"; else fail "systemd-analyze verify $(basename "$unit"): $out"; fi
  done
else
  warn "systemd-analyze not found: units checked by grep only"
fi

# --- Python-level checks: YAML, Settings parsing, shard count -------------------
if [[ -z "$PY" ]]; then
  warn "no Python found: scylla.yaml and setting types not parsed"
else
  py_out=$("$PY" - "$SCYLLA_YAML" "$SIEVE_ENV" "$ROOT" "$CITY" 2>&1 <<'EOF'
import sys
yaml_path, env_path, root, city_path = sys.argv[1:5]
bad = 0
def say(level, msg):
    global bad
    print(f"{level:<5} {msg}")
    bad += level == "FAIL"

try:
    import yaml
except ImportError:
    yaml = None
if yaml is None:
    say("WARN", f"PyYAML not available to {sys.executable}: scylla.yaml not parsed")
else:
    conf = yaml.safe_load(open(yaml_path))
    expect = {"endpoint_snitch": "GossipingPropertyFileSnitch", "native_transport_port": 9042,
              "developer_mode": False, "authorizer": "CassandraAuthorizer"}
    for key, value in expect.items():
        if conf.get(key) != value:
            say("FAIL", f"scylla.yaml: {key} is {conf.get(key)!r}, want {value!r}")
    for key in ("cluster_name", "num_tokens", "seed_provider", "listen_address", "rpc_address",
                "broadcast_address", "broadcast_rpc_address", "commitlog_sync", "authenticator",
                "client_encryption_options", "server_encryption_options"):
        if key not in conf:
            say("FAIL", f"scylla.yaml: {key} missing")
    if conf.get("authenticator") == "PasswordAuthenticator":
        say("WARN", "scylla.yaml: PasswordAuthenticator, but the engine sends no credentials (scylla/README.md, Known gaps)")
    if (conf.get("client_encryption_options") or {}).get("enabled"):
        say("WARN", "scylla.yaml: client TLS on, but the engine cannot connect with TLS (scylla/README.md, Known gaps)")
    print(f"ok    scylla.yaml parses ({len(conf)} keys)")

env = {}
for line in open(env_path, encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith(("#", ";")) and "=" in line:
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        env[key] = value

sys.path.insert(0, root)
try:
    from engine.config import Settings
except Exception as exc:  # engine or its dependencies not importable here
    say("WARN", f"engine not importable with {sys.executable} ({type(exc).__name__}): setting types not checked")
else:
    try:
        settings = Settings.from_env(environ=env)
    except Exception as exc:
        say("FAIL", f"sieve.env does not load as engine Settings: {exc}")
    else:
        print("ok    sieve.env loads as engine Settings (types and checks pass)")
        try:
            from engine.city import load_city
            city = load_city(__import__("pathlib").Path(city_path), default_shards=settings.shards_per_district)
        except Exception as exc:
            say("WARN", f"city file {city_path} not loaded ({type(exc).__name__}): shard count not checked")
        else:
            shards = sum(d.shards for d in city.districts.values())
            hosts = int(env.get("CLUSTER_SHARD_HOSTS", "0") or 0)
            if 1 <= hosts <= shards:
                print(f"ok    CLUSTER_SHARD_HOSTS={hosts} for {shards} logical shards in {city.name}")
            else:
                say("FAIL", f"CLUSTER_SHARD_HOSTS={hosts}: must be 1..{shards} (logical shards in {city.name})")
sys.exit(1 if bad else 0)
EOF
)
  py_rc=$?
  printf '%s\n' "$py_out"
  warnings=$((warnings + $(grep -c '^WARN' <<<"$py_out")))
  failures=$((failures + $(grep -c '^FAIL' <<<"$py_out")))
  if ((py_rc)) && ! grep -q '^FAIL' <<<"$py_out"; then fail "Python checks exited with status $py_rc"; fi
fi

echo "---"
if ((failures)); then echo "check-config: $failures check(s) failed, $warnings warning(s)"; exit 1; fi
echo "check-config: all checks passed ($warnings warning(s))"
