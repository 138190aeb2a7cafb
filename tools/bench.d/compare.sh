# shellcheck shell=bash
# tools/bench compare | latency | idle-memory: ringcast beside the batching baseline, Redis pub/sub
# and NATS on the same shapes. Sourced by tools/bench.
#
# Shapes (every suite of this file takes all of them; the defaults differ):
#   sN-64, sN-1k  full speed (--rate 0), 1 publisher, N subscribers (1, 10, 100, 1000) x 64 B or
#                 1 KiB, 2 verifying; the headline is deliveries/s
#   rR            R msg/s (any R), 1 publisher, 100 subscribers x 64 B, 10 verifying (latency
#                 samples), byte counters read every 5 ms (flood cannot follow every send of 100
#                 copying readers at 10,000 msg/s on one core); the headline is p99 latency
#   idle          --conns idle connections held for --duration s (flood --pubs 0); the headline
#                 is the server's RSS added per connection; the kernel's slab and socket buffer
#                 memory are sampled while they are held
# Subscribers read in --read-mode (copy: ordinary reads into a user buffer).

suite_defaults() {
    reps=3
    duration=5
    warmup=1
    case $suite in
    # 5 shapes x 4 relays x 3 reps of about 10 s each: about 12 minutes on a quiet machine.
    compare) shapes=s100-64,s1000-64,s100-1k,r1000,r10000 ;;
    # More samples per run for p999: 10 s x 1,000 msg/s x 10 verifying subscribers = 100,000.
    latency) shapes=r1000,r10000; duration=10 ;;
    idle-memory) shapes=idle; duration=3 ;;
    esac
}

suite_usage() {
    case $suite in
    compare)
        cat <<'EOF'
Usage: tools/bench compare [options]

ringcast vs the batching baseline (bench/baseline), redis-server pub/sub and nats-server, on the
same shapes, interleaved: within a repetition each shape runs once per relay back to back, the
relay that goes first rotating per repetition. A relay that is not installed is skipped with a
note. Default shapes: full speed 100 subscribers x 64 B, 1000 x 64 B, 100 x 1 KiB (deliveries/s);
1,000 and 10,000 msg/s to 100 subscribers x 64 B (latency p50/p99/p999, server CPU). Headline
figures use ordinary reads (--read-mode copy). About 12 minutes with the defaults.

Shapes: s1-64 s10-64 s100-64 s1000-64 s1-1k s10-1k s100-1k s1000-1k (full speed, N subscribers),
rR (R msg/s, e.g. r1000), idle (--conns idle connections).

Options of this suite:
  --read-mode MODE  how subscribers read: copy (default), trunc (MSG_TRUNC), lowat (copy +
                    SO_RCVLOWAT)
  --rates LIST      fixed rates to run instead of the default r1000,r10000 (e.g. 1000,50000)
  --conns N         idle connections of the idle shape (default 10000)
EOF
        ;;
    latency)
        cat <<'EOF'
Usage: tools/bench latency [options]

Fixed-rate latency percentiles (p50, p99, p999; from each message's intended send time, no
coordinated omission) and server CPU, per rate and relay: 1 publisher, 100 subscribers x 64 B,
10 of them timing every message. Defaults: 1,000 and 10,000 msg/s, 10 s measured, 3 reps.

Options of this suite:
  --rates LIST      comma-separated messages/s (default 1000,10000); same as --shapes r1000,...
  --read-mode MODE  copy (default), trunc or lowat
EOF
        ;;
    idle-memory)
        cat <<'EOF'
Usage: tools/bench idle-memory [options]

Memory per idle connection per relay: flood opens --conns connections (subscribers that never
receive anything, no publisher) and holds them for --duration seconds. Reports the server's RSS
added per connection (VmRSS before the first connection and while they are held), the
descriptors added, and the kernel's memory: slab added per connection (/proc/meminfo; both ends
of each loopback connection, so two sockets, and anything else the machine did meanwhile) and
TCP socket buffer memory (/proc/net/sockstat). Defaults: 10000 connections, 3 s, 3 reps.

Options of this suite:
  --conns N         idle connections (default 10000)
EOF
        ;;
    esac
}

suite_option() {
    case "$1" in
    --read-mode) need_arg "$@"; read_mode=$2; consumed=2 ;;
    --rates)
        need_arg "$@"
        local r list=""
        for r in ${2//,/ }; do positive --rates "$r"; list+="${list:+,}r$r"; done
        [ -n "$list" ] || bad_usage "--rates: empty"
        # latency: the rates are the shapes; compare: they replace its fixed-rate shapes.
        if [ "$suite" = latency ]; then shapes=$list; else
            shapes=$(tr , '\n' <<<"$shapes" | grep -v '^r' | paste -sd, -)${list:+,$list}
            shapes=${shapes#,}
        fi
        consumed=2
        ;;
    --conns) need_arg "$@"; positive "$1" "$2"; conns=$2; consumed=2 ;;
    esac
}

shape_valid() {
    case $1 in
    s1-64 | s10-64 | s100-64 | s1000-64 | s1-1k | s10-1k | s100-1k | s1000-1k | idle) return 0 ;;
    r*) case ${1#r} in '' | *[!0-9]* | 0) return 1 ;; esac; return 0 ;;
    esac
    return 1
}
shape_kind() { case $1 in s*) echo full ;; r*) echo rate ;; idle) echo idle ;; esac; }
shape_subs() { case $1 in s1-*) echo 1 ;; s10-*) echo 10 ;; s100-* | r*) echo 100 ;; s1000-*) echo 1000 ;; idle) echo "$conns" ;; esac; }
shape_size() { case $1 in *-1k) echo 1024 ;; *) echo 64 ;; esac; }
shape_conns() { shape_subs "$1"; }
shape_queue() { echo ""; } # every relay at its defaults
shape_reps() { echo "$reps"; }
shape_control() { echo ""; }
shape_read_mode() { [ "$1" = idle ] && echo none || echo "$read_mode"; }
rate_text() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; } # 10000 -> 10,000
shape_name() {
    local n
    case $1 in
    s*) n=$(shape_subs "$1"); echo "full speed, 1 pub, $n sub$([ "$n" = 1 ] || echo s) × $([ "$(shape_size "$1")" = 64 ] && echo "64 B" || echo "1 KiB")" ;;
    r*) echo "$(rate_text "${1#r}") msg/s, 100 subs × 64 B" ;;
    idle) echo "$conns idle connections" ;;
    esac
}
shape_label() { # short, for the charts
    case $1 in
    s*) echo "$(shape_subs "$1") × $([ "$(shape_size "$1")" = 64 ] && echo "64 B" || echo "1 KiB")" ;;
    r*) echo "$(rate_text "${1#r}") msg/s" ;;
    idle) echo "$conns connections" ;;
    esac
}
shape_args() {
    local t="--duration $duration --warmup $warmup" ra
    ra=$(shape_read_args "$1")
    case $1 in
    s*) echo "--subs $(shape_subs "$1") --pubs 1 --size $(shape_size "$1") --rate 0 --verify 2 $ra $t" ;;
    r*) echo "--subs 100 --pubs 1 --size 64 --rate ${1#r} --verify 10 --read-interval 5000 $ra $t" ;;
    idle) echo "--subs $conns --pubs 0 --duration $duration" ;;
    esac
}
shape_headline() {
    case $(shape_kind "$1") in
    full) echo .deliveries_per_s ;;
    rate) echo .latency_us.p99 ;;
    idle) echo "$idle_rss_per_conn" ;;
    esac
}
suite_extra_runs() { :; }
suite_results() { :; }

# ---- summary -------------------------------------------------------------------------------
table_relays=(ringcast baseline redis nats)
cell() { # shape relay expr kind: the median, or "not run"
    if has_relay "$2"; then fmt "$(med "$1" "$2" "$3")" "$4"; else echo "not run"; fi
}
per_relay() { # shape expr kind: "a / b / c / d" over the table's relays
    local r s=""
    for r in "${table_relays[@]}"; do s+="${s:+ / }$(cell "$1" "$r" "$2" "$3")"; done
    echo "$s"
}
lossless_cells() {
    local r s=""
    for r in "${table_relays[@]}"; do
        if has_relay "$r"; then s+="${s:+ / }$(trouble "$1" "$r")"; else s+="${s:+ / }not run"; fi
    done
    echo "$s"
}
# One row: a figure per relay, ringcast's ratios to the others, and (first row of a shape) the
# CPU, lossless and label columns.
row() { # shape name figure expr kind first(0/1)
    local shape=$1 a r line
    a=$(med "$shape" ringcast "$4")
    line="| $2 | $3 "
    for r in "${table_relays[@]}"; do line+="| $(cell "$shape" "$r" "$4" "$5") "; done
    for r in baseline redis nats; do line+="| $(ratio "$a" "$(med "$shape" "$r" "$4")") "; done
    if [ "$6" = 1 ] && [ "$(shape_kind "$shape")" != idle ]; then
        line+="| $(per_relay "$shape" .server_cpu cpu) | $(per_relay "$shape" .flood_cpu cpu) | $(per_relay "$shape" .other_cpu cpu) | $(lossless_cells "$shape") | $(shape_labels "$shape") |"
    elif [ "$6" = 1 ]; then
        line+="| | | $(per_relay "$shape" .other_cpu cpu) | | $(shape_labels "$shape") |"
    else
        line+="| | | | | |"
    fi
    echo "$line"
}

read_mode_text() {
    case $1 in
    copy) echo "\`copy\`: an ordinary recv into a user buffer, as real clients read" ;;
    trunc) echo "\`trunc\`: MSG_TRUNC, the kernel discards the data without copying it (cheaper than real clients)" ;;
    lowat) echo "\`lowat\`: copy, waking only once SO_RCVLOWAT bytes are waiting" ;;
    esac
}

suite_summary() {
    local s name n_runs n_used title
    case $suite in
    compare) title="ringcast vs the baseline, Redis and NATS" ;;
    latency) title="fixed-rate latency per relay" ;;
    idle-memory) title="memory per idle connection" ;;
    esac
    n_runs=$(wc -l <"$(results)")
    n_used=$(jq -c 'select(.used)' "$(results)" | wc -l)
    echo "### tools/bench $suite: $title ($(date -u '+%Y-%m-%d'), median of $reps)"
    echo
    echo "Command: $cmd_text. Commit: $built_from. Date: $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Machine: \`nproc\` $(nproc) (${cpu_model:-unknown}), \`uname -r\` $(uname -r); $pinning."
    if [ "$suite" = idle-memory ]; then
        echo "Connections held ${duration} s; no publisher; every relay at its defaults."
    else
        echo "${duration} s measured after ${warmup} s of warm-up; 1 publisher; every relay at its defaults."
    fi
    if [ -n "$(shapes_of_kind full)$(shapes_of_kind rate)" ]; then
        echo "Read mode: subscribers read with $(read_mode_text "$read_mode") (flood \`$(flood_read_args "$read_mode")\`)."
    fi
    for s in "${notes[@]}"; do echo "Note: $s."; done
    echo "Runs: $n_runs measured, $n_used used (results.jsonl: every run, \"used\" marks those in the medians)."
    echo
    echo "| shape | figure | ringcast | baseline | Redis | NATS | ringcast/baseline | ringcast/Redis | ringcast/NATS | server CPU rc / base / redis / nats | flood CPU rc / base / redis / nats | other load rc / base / redis / nats | lossless rc / base / redis / nats | label |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for s in "${shape_list[@]}"; do
        name=$(shape_name "$s")
        case $(shape_kind "$s") in
        full) row "$s" "$name" "deliveries/s" .deliveries_per_s rate 1 ;;
        rate)
            row "$s" "$name" "p50 latency" .latency_us.p50 us 1
            row "$s" "" "p99 latency" .latency_us.p99 us 0
            row "$s" "" "p999 latency" .latency_us.p999 us 0
            row "$s" "" "server CPU (cores)" .server_cpu cpu 0
            ;;
        idle)
            row "$s" "$name" "server RSS added per connection" "$idle_rss_per_conn" bytes 1
            row "$s" "" "kernel slab added per connection (both ends)" "$idle_slab_per_conn" bytes 0
            row "$s" "" "TCP socket buffers per connection" '(if .kernel.conns then .kernel.tcp_mem_pages * 4096 / .kernel.conns else empty end)' bytes 0
            row "$s" "" "server descriptors added" '(.server_fds.end - .server_fds.start)' "" 0
            ;;
        esac
    done
    echo
    echo "Ratios: ringcast's figure over the other relay's: above 1 favours ringcast for deliveries/s,"
    echo "below 1 for latency, CPU and memory. Cores: each process's own accounting over the measured"
    echo "window (the kernel's loopback work included); \"other load\" is every other process meanwhile."
    echo "A label \"noisy (spread N%)\" means the repetitions' headline figure (deliveries/s, p99, RSS per"
    echo "connection) still spread more than $spread_limit % after $max_tries tries; \"noisy: busy machine\" that"
    echo "other processes used 5 % of a core or more for the whole --quiet-wait before a run."
    echo
    for s in deliveries latency memory; do
        [ ! -e "$out/$s.png" ] || echo "![$s]($s.png)"
    done
    echo
    echo "Commands (flood pinned with taskset -c 1; PORT and PID are the server's, MPORT a free port):"
    echo
    for s in "${shape_list[@]}"; do
        echo "- $s: \`flood --proto line|redis|nats --port PORT --server-pid PID $(shape_args "$s")\`"
    done
    for s in "${table_relays[@]}"; do echo "- $s: \`$(server_cmd "$s" "")\`"; done
}
