# shellcheck shell=bash
# tools/bench: options, tools, binaries, relays and the run directory. Sourced by tools/bench.

say() { printf '%s\n' "bench $suite: $*" >&2; }
die() { say "$*"; exit 1; }
bad_usage() { printf '%s\n' "tools/bench $suite: $*" >&2; exit 2; }

# ---- options -------------------------------------------------------------------------------
# Defaults every suite shares; suite_defaults (in the suite's file) overrides what it needs.
reps=3
fixed_reps=""    # core's fixed-rate shapes repeat more often; "" = --reps
duration=5
warmup=1
shapes=""
relays=ringcast,baseline,redis,nats
relays_allowed="ringcast baseline redis nats"
build=1
out=""
quiet_wait=120
resume=0
perf=0
read_mode=copy   # the headline read mode (compare, latency): ordinary reads
conns=10000      # idle-memory: idle connections held

common_usage() {
    cat <<EOF
Common options:
  --reps N          repetitions of every shape (median shown; default $reps)
  --duration S      seconds measured per run (default $duration)
  --warmup S        seconds of load before measuring (default $warmup)
  --shapes LIST     comma-separated shapes to run (default: $shapes)
  --relays LIST     comma-separated relays (default: $relays); one not installed is skipped
  --no-build        use the binaries as they are (default: tools/build release first)
  --out DIR         the run directory (default: bench/results/<YYYYMMDD-HHMMSS>-$suite)
  --resume DIR      finish an interrupted run in DIR (same options again): its binaries, the
                    runs it lacks
  --quiet-wait S    wait up to S seconds before each run for other processes to use less than
                    5 % of a core for 2 s; then run anyway and label it noisy (default $quiet_wait)
  -h, --help        this text
Environment: RINGCAST_BIN, BASELINE_BIN, FLOOD_BIN override the binaries (default
build/ringcast, build/bench/baseline/baseline, build/bench/flood/flood); FLOOD_READ_ARGS stands
in for \`--read-mode copy\` with a flood that predates --read-mode (e.g. "--copy-reads
--rcvlowat 0"; trunc is then such a flood's default, lowat is refused).
Needs jq (tools/deps installs it with gnuplot-nox, curl, redis-server and nats-server).
EOF
}

positive() { # option value: a positive integer or exit 2
    case "$2" in '' | *[!0-9]* | 0) bad_usage "$1: expected a positive integer, got '$2'" ;; esac
}
seconds() { # option value: a positive number or exit 2
    awk -v v="$2" 'BEGIN { exit !(v ~ /^[0-9]+(\.[0-9]+)?$/ && v > 0) }' ||
        bad_usage "$1: expected a number of seconds, got '$2'"
}
need_arg() { [ $# -ge 2 ] || bad_usage "$1 needs a value"; }

parse_options() {
    while [ $# -gt 0 ]; do
        case "$1" in
        --reps | --duration | --warmup | --shapes | --relays | --out | --resume | --quiet-wait)
            need_arg "$@" ;;
        esac
        case "$1" in
        --reps) positive "$1" "$2"; reps=$2; shift 2 ;;
        --duration) seconds "$1" "$2"; duration=$2; shift 2 ;;
        --warmup) seconds "$1" "$2"; warmup=$2; shift 2 ;;
        --shapes) shapes=$2; shift 2 ;;
        --relays) relays=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --out) out=$2; shift 2 ;;
        --resume) out=$2; resume=1; shift 2 ;;
        --quiet-wait)
            case "$2" in '' | *[!0-9]*) bad_usage "--quiet-wait: expected whole seconds, got '$2'" ;; esac
            quiet_wait=$2; shift 2 ;;
        -h | --help) suite_usage; echo; common_usage; exit 0 ;;
        *)
            # The suite's own options: suite_option sets $consumed (0: not one of them).
            consumed=0
            suite_option "$@"
            [ "$consumed" -gt 0 ] || bad_usage "unknown argument '$1' (see tools/bench $suite --help)"
            shift "$consumed"
            ;;
        esac
    done
}

check_options() {
    local s r
    [ -n "$shapes" ] || bad_usage "--shapes: empty"
    for s in ${shapes//,/ }; do
        shape_valid "$s" || bad_usage "--shapes: no shape '$s' in $suite (see --help)"
    done
    for r in ${relays//,/ }; do
        case " $relays_allowed " in *" $r "*) ;;
        *) bad_usage "--relays: no relay '$r' in $suite (${relays_allowed// /, })" ;; esac
    done
    case "$read_mode" in copy | trunc | lowat) ;; *) bad_usage "--read-mode: copy, trunc or lowat" ;; esac
    fixed_reps=${fixed_reps:-$reps}
}

check_tools() {
    command -v jq >/dev/null || die "jq is needed: run tools/deps (it installs jq, gnuplot-nox, curl, redis-server, nats-server)"
    have_curl=1
    command -v curl >/dev/null || { have_curl=0; say "no curl: ringcast's /metrics will not be read (tools/deps installs it)"; }
    have_gnuplot=1
    command -v gnuplot >/dev/null || { have_gnuplot=0; say "no gnuplot: no charts (tools/deps installs gnuplot-nox)"; }
    if [ "$perf" = 1 ] && ! command -v perf >/dev/null; then
        say "no perf: --perf ignored (apt-get install linux-perf)"; perf=0
    fi
}

# ---- flood's read mode ---------------------------------------------------------------------
# The one place that turns a read mode into flood's arguments: copy = ordinary recv into a user
# buffer, trunc = MSG_TRUNC (the kernel discards the data), lowat = copy + SO_RCVLOWAT.
flood_read_args() { # mode
    if [ -z "${FLOOD_READ_ARGS+set}" ]; then
        echo "--read-mode $1"
        return
    fi
    # A flood from before --read-mode: FLOOD_READ_ARGS is what its copy mode needs.
    case $1 in
    copy) echo "$FLOOD_READ_ARGS" ;;
    trunc) echo "" ;;
    *) die "read mode $1 needs a flood with --read-mode (unset FLOOD_READ_ARGS)" ;;
    esac
}
shape_read_args() { # shape: flood's read arguments for it ("" for a shape without reads)
    local m
    m=$(shape_read_mode "$1")
    [ "$m" = none ] || flood_read_args "$m"
}
check_flood_read_mode() {
    local s need=0
    [ -z "${FLOOD_READ_ARGS+set}" ] || return 0
    for s in ${shapes//,/ }; do [ "$(shape_read_mode "$s")" = none ] || need=1; done
    [ $need = 1 ] || return 0
    # Not `flood --help | grep -q`: grep quits at the first match, and flood, whose help takes
    # more than one 4 KiB write, dies of SIGPIPE on the next, which pipefail reports as no match.
    local help
    help=$("$flood_bin" --help 2>&1 || true)
    grep -q -- '--read-mode' <<<"$help" && return 0
    die "$flood_bin has no --read-mode (built before it landed): rebuild it, or set FLOOD_READ_ARGS='--copy-reads --rcvlowat 0'"
}

# ---- binaries and relays -------------------------------------------------------------------
prepare_binaries() {
    if [ "$build" = 1 ] && [ "$resume" = 0 ]; then tools/build release >&2; fi
    ringcast_bin=${RINGCAST_BIN:-$root/build/ringcast}
    baseline_bin=${BASELINE_BIN:-$root/build/bench/baseline/baseline}
    flood_bin=${FLOOD_BIN:-$root/build/bench/flood/flood}
    nats_bin=$(command -v nats-server || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true)
    redis_bin=$(command -v redis-server || { [ -x /usr/bin/redis-server ] && echo /usr/bin/redis-server; } || true)
    [ "$resume" = 1 ] || [ -x "$flood_bin" ] || die "no $flood_bin (tools/build release, or set FLOOD_BIN)"
}

# Which --proto values flood takes: it exits 2 (bad arguments) for one it does not know. Port 1
# has no listener, so a known protocol fails to connect (exit 1) at once.
flood_knows() {
    local rc=0
    "$flood_bin" --proto "$1" --port 1 --subs 1 --pubs 1 --count 1 >/dev/null 2>&1 || rc=$?
    [ $rc -ne 2 ]
}

pick_relays() {
    local r
    want_relays=()
    notes=()
    for r in ${relays//,/ }; do
        case "$r" in
        ringcast) [ -x "$ringcast_bin" ] && want_relays+=(ringcast) || notes+=("no $ringcast_bin: ringcast skipped") ;;
        baseline) [ -x "$baseline_bin" ] && want_relays+=(baseline) || notes+=("no $baseline_bin: the baseline skipped") ;;
        redis) [ -n "$redis_bin" ] && want_relays+=(redis) || notes+=("redis-server is not installed (tools/deps installs it): Redis skipped") ;;
        nats)
            if [ -z "$nats_bin" ]; then
                notes+=("nats-server is not installed (tools/deps installs it): NATS skipped")
            elif ! flood_knows nats; then
                notes+=("this flood has no --proto nats: NATS skipped")
            else want_relays+=(nats); fi
            ;;
        esac
    done
    for r in "${notes[@]}"; do say "$r"; done
    [ ${#want_relays[@]} -gt 0 ] || die "no relay to run"
}
has_relay() { case " ${want_relays[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
relay_title() { case $1 in ringcast) echo ringcast ;; baseline) echo baseline ;; redis) echo Redis ;; nats) echo NATS ;; esac; }

# ---- the run directory ---------------------------------------------------------------------
# Layout: summary.md, results.jsonl, machine.txt, *.png (tracked); raw/ (flood JSON, commands,
# logs, /metrics, perf data, chart data) and bin/ (the binaries run) stay local (.gitignore).
open_run_dir() {
    local b copy
    cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
    if [ "$resume" = 1 ]; then
        [ -s "$out/machine.txt" ] || bad_usage "--resume $out: no machine.txt there"
        for b in ringcast_bin baseline_bin flood_bin; do
            copy="$out/bin/$(basename "${!b}")"
            if [ -x "$copy" ]; then printf -v "$b" '%s' "$copy"; fi
        done
        [ -x "$flood_bin" ] || bad_usage "--resume $out: no flood in $out/bin"
        built_from=$(sed -n 's/^commit: //p' "$out/machine.txt" | head -1)
        cmd_text="\`$(sed -n 's/^command: //p' "$out/machine.txt" | head -1)\`, interrupted and finished with \`$command_line\`"
        echo "resumed: $(date -u '+%Y-%m-%d %H:%M UTC') with $command_line (same binaries)" >>"$out/machine.txt"
    else
        out=${out:-$root/bench/results/$(date -u +%Y%m%d-%H%M%S)-$suite}
        [ ! -e "$out/raw/runs.jsonl" ] || bad_usage "--out $out: it holds a run already (--resume to finish it)"
        mkdir -p "$out/bin" "$out/raw"
        copy_binaries
        cmd_text="\`$command_line\`"
        describe_commit
        write_machine_txt
    fi
    mkdir -p "$out/raw"
    check_flood_read_mode
    pin_cpus
}

# Run copies of the binaries, so that a rebuild during the run cannot mix two versions.
copy_binaries() {
    local b copy src_mtime
    src_mtime=$(find "$root/src" "$root/include" -type f -printf '%T@\n' 2>/dev/null | sort -g | tail -1)
    binaries=""
    for b in ringcast_bin baseline_bin flood_bin; do
        [ -x "${!b}" ] || continue
        cp -p "${!b}" "$out/bin/"
        copy="$out/bin/$(basename "${!b}")"
        binaries+="$(basename "${!b}"): ${!b#"$root"/}, built $(date -u -r "${!b}" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$copy" | cut -c1-16)"
        if [ "$b" = ringcast_bin ] && [ -n "$src_mtime" ] &&
            awk -v s="$src_mtime" -v b="$(stat -c %Y "${!b}")" 'BEGIN { exit !(s > b + 1) }'; then
            binaries+=" (older than the newest file under src/ or include/)"
            say "warning: ${!b} is older than the newest file under src/ or include/"
        fi
        binaries+=$'\n'
        printf -v "$b" '%s' "$copy"
    done
}

describe_commit() {
    local paths=(src include bench/flood bench/baseline CMakeLists.txt) changed
    built_from=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no commit')
    changed=$(git -C "$root" status --porcelain -- "${paths[@]}" 2>/dev/null | wc -l)
    if [ "$changed" -gt 0 ]; then
        built_from+=" + uncommitted changes ($changed files under ${paths[*]}; diff sha256 $(git -C "$root" diff HEAD -- "${paths[@]}" | sha256sum | cut -c1-16))"
    fi
    # Binaries given from elsewhere (RINGCAST_BIN=...) need not come from this work tree.
    if [ -n "${RINGCAST_BIN:-}${BASELINE_BIN:-}${FLOOD_BIN:-}" ]; then
        built_from+="; binaries given by RINGCAST_BIN/BASELINE_BIN/FLOOD_BIN (see below)"
    fi
}

write_machine_txt() {
    {
        echo "command: $command_line"
        echo "commit: $built_from"
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "nproc: $(nproc)"
        echo "kernel: $(uname -r)"
        echo "cpu: ${cpu_model:-unknown}"
        echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
        echo "ringcast: $("$ringcast_bin" --version 2>/dev/null || echo '?')"
        printf '%s' "$binaries"
        [ -z "$redis_bin" ] || echo "redis: $("$redis_bin" --version | awk '{print $3}' | sed 's/^v=//')"
        [ -z "$nats_bin" ] || echo "nats: $("$nats_bin" --version 2>/dev/null | awk '{print $NF}')"
        [ -z "${FLOOD_READ_ARGS+set}" ] || echo "FLOOD_READ_ARGS: $FLOOD_READ_ARGS"
        echo "reps: $reps (fixed-rate shapes: $fixed_reps), duration: ${duration}s, warm-up: ${warmup}s, quiet-wait: ${quiet_wait}s"
        local n
        for n in "${notes[@]}"; do echo "note: $n"; done
    } >"$out/machine.txt"
}

pin_cpus() {
    local load
    if [ "$(nproc)" -lt 2 ]; then
        say "fewer than 2 CPUs: server and flood will share a core"
        pin_server=(); pin_flood=(); pinning="server and flood share the only CPU"
    else
        pin_server=(taskset -c 0); pin_flood=(taskset -c 1); pinning="server on CPU 0, flood on CPU 1"
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
        say "load average is $load: each run waits for a quiet machine (up to ${quiet_wait}s)"
    fi
}
