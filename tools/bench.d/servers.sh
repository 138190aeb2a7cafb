# shellcheck shell=bash
# tools/bench: start and stop the relays. Sourced by tools/bench.
#
# server_cmd (in the suite: ringcast's and the baseline's --max-queue) is shown in summary.md;
# start_server runs the same thing with real ports.

server_pid=""
server_port=""
metrics_port=""

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
    done
    echo 16379
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --max-clients leaves room for the idle-memory suite's connections and flood's extras.
max_clients() { echo $((conns > 10000 ? conns + 100 : 10100)); }

server_cmd() { # relay queue: the server's command line as summary.md shows it
    local q=$2
    case $1 in
    ringcast) echo "taskset -c 0 build/ringcast --port 0 -q --max-clients $(max_clients)${q:+ --max-queue $q} --metrics 127.0.0.1:MPORT" ;;
    baseline) echo "taskset -c 0 build/bench/baseline/baseline --port 0${q:+ --max-queue $q}" ;;
    redis) echo "taskset -c 0 redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no --client-output-buffer-limit 'pubsub 0 0 0' --maxclients $(max_clients)" ;;
    nats) echo "taskset -c 0 nats-server -a 127.0.0.1 -p PORT" ;;
    esac
}
proto_of() { case $1 in redis | nats) echo "$1" ;; *) echo line ;; esac; }

# ringcast and the baseline print "Server started at: ADDR:PORT" once they listen.
wait_started_line() { # log
    for _ in $(seq 200); do
        server_port=$(sed -n 's/^Server started at: .*:\([0-9]*\)$/\1/p' "$1")
        if [ -n "$server_port" ]; then
            sleep 0.05 # a metrics port taken meanwhile makes it exit right after the start line
            kill -0 "$server_pid" 2>/dev/null && return 0
            return 1
        fi
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
wait_port() { # log pattern-or-empty
    for _ in $(seq 200); do
        if { [ -z "$2" ] || grep -q "$2" "$1" 2>/dev/null; } && port_open "$server_port"; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

start_server() { # relay logfile queue
    local relay=$1 log=$2 q=$3 ok=0
    metrics_port=""
    : >"$log" # redis-server appends to its log: a retry must not find the last attempt's lines
    case "$relay" in
    ringcast)
        # /metrics (read once, after flood is done): frames per send, publisher stalls, cuts.
        [ "$have_curl" = 1 ] && metrics_port=$(free_port)
        "${pin_server[@]}" "$ringcast_bin" --port 0 -q --max-clients "$(max_clients)" ${q:+--max-queue "$q"} \
            ${metrics_port:+--metrics "127.0.0.1:$metrics_port"} >"$log" 2>&1 &
        server_pid=$!
        wait_started_line "$log" && ok=1
        ;;
    baseline)
        "${pin_server[@]}" "$baseline_bin" --port 0 ${q:+--max-queue "$q"} >"$log" 2>&1 &
        server_pid=$!
        wait_started_line "$log" && ok=1
        ;;
    redis)
        server_port=$(free_port)
        "${pin_server[@]}" "$redis_bin" --port "$server_port" --bind 127.0.0.1 --save '' \
            --appendonly no --client-output-buffer-limit 'pubsub 0 0 0' --maxclients "$(max_clients)" \
            --daemonize no --logfile "$log" &
        server_pid=$!
        wait_port "$log" 'Ready to accept connections' && ok=1
        ;;
    nats)
        server_port=$(free_port)
        "${pin_server[@]}" "$nats_bin" -a 127.0.0.1 -p "$server_port" >"$log" 2>&1 &
        server_pid=$!
        wait_port "$log" "" && ok=1
        ;;
    esac
    [ $ok = 0 ] || return 0
    say "$relay did not start; its log ($log):"
    tail -5 "$log" >&2 || true
    stop_server
    return 1
}

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# ringcast's /metrics as a JSON object of the counters the summaries use ({} without them).
read_metrics() { # file-to-keep
    [ -n "$metrics_port" ] || { echo '{}'; return; }
    curl -s --max-time 3 "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null | grep -v '^#' >"$1" || true
    awk '
        $1 == "ringcast_sends_total" { s = $2 }
        $1 == "ringcast_frames_delivered_total" { f = $2 }
        $1 == "ringcast_publisher_stalls_total" { st = $2 }
        $1 == "ringcast_disconnects_total{reason=\"slow_consumer\"}" { sl = $2 }
        $1 == "ringcast_frames_dropped_total" { d = $2 }
        END {
            if (s == "") { print "{}"; exit }
            printf "{\"sends\": %s, \"frames\": %s, \"stalls\": %s, \"slow_cuts\": %s, \"dropped\": %s}\n",
                s, f + 0, st + 0, sl + 0, d + 0
        }' "$1"
}

perf_pid=""
flood_pid=""
cleanup() {
    [ -z "$perf_pid" ] || kill -INT "$perf_pid" 2>/dev/null || true
    [ -z "$flood_pid" ] || kill -TERM "$flood_pid" 2>/dev/null || true
    stop_server
}
trap 'cleanup' EXIT
trap 'exit 130' INT TERM
