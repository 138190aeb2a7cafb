# shellcheck shell=bash
# tools/bench core | hostile: issue 2's shapes (1-6) and the engine issue's floors (7-20),
# ringcast vs the batching baseline (bench/baseline: a minimal epoll relay, one send per read per
# client, which shows where the kernel's copy wall is on the day) and redis-server's pub/sub.
# hostile is core's stuck-reader and trickle-reader pairs (10-19) and their floors. Sourced by
# tools/bench.

# Output each client may have pending in the throughput floor shapes (7-9), given to both ringcast
# and the baseline; every other shape runs both at their defaults.
big_queue=256M
# The extra subscriber that never reads: flood refuses --slow-rate 0, and reads at least one byte
# per 10 ms tick, so 1 B/s means 1 byte every 10 ms (100 B/s) into a 64 KiB receive buffer.
stuck="--slow-subs 1 --slow-rate 1"
# The trickle reader of the fixed-rate shapes: 1 KiB/s (10 bytes every 10 ms).
trickle="--slow-subs 1 --slow-rate 1K"
# At 10,000 msg/s flood cannot follow every send of 100 copying subscribers on its one core (shape
# 20: it uses all of it), so in shapes 16-17 the 98 byte-counting subscribers read every 5 ms
# instead; the 2 verifying ones still read at once.
interval="--read-interval 5000"

suite_defaults() {
    reps=3
    fixed_reps=5
    duration=8
    warmup=2
    relays=ringcast,baseline,redis
    relays_allowed="ringcast baseline redis"
    case $suite in
    core) shapes=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20 ;;
    hostile) shapes=10,11,12,13,14,15,16,17,18,19 ;;
    esac
}

suite_usage() {
    if [ "$suite" = hostile ]; then
        cat <<'EOF'
Usage: tools/bench hostile [options]

core's hostile-client shapes as a named subset: each shape with one stuck reader (11, 13, 15)
or trickle reader (17, 19) runs as a pair with the same shape without it (10, 12, 14, 16, 18),
per relay, back to back; the floors: healthy deliveries/s >= 0.9x the pair without it, nothing
lost, the stuck reader cut; healthy p99 <= 1.5x the run without the trickle reader + 1 ms.
Defaults: shapes 10-19, 3 reps (fixed rates 16-19: 5), 8 s after 2 s of warm-up.
EOF
    else
        cat <<'EOF'
Usage: tools/bench core [options]

ringcast vs the batching baseline and Redis pub/sub on 20 shapes, with the engine issue's floors
(PASS/FAIL). Shapes 1-6 are issue 2's (byte-counting subscribers read with MSG_TRUNC: --read-mode
trunc; 6 is 10,000 idle connections); 7-20 the engine issue's floors, with subscribers that read
as ordinary clients do (--read-mode copy). Every shape runs --reps times (16-20 --fixed-reps
times); within a repetition each shape runs once per relay back to back, the order rotating per
repetition; a shape with a stuck or trickle reader runs as a pair with the same shape without
it. About 45 minutes with the defaults.
EOF
    fi
    cat <<'EOF'

Options of this suite:
  --fixed-reps N    repetitions of the fixed-rate shapes 16-20 (default 5)
  --perf            afterwards, one more run of shape 9 per relay (ringcast, baseline) under
                    `perf record -e cpu-clock -g` (not in the medians); the summary says where
                    the time goes
Relays: ringcast, baseline, redis (default: all three). Shapes: 1-20.
EOF
}

suite_option() {
    case "$1" in
    --fixed-reps) need_arg "$@"; positive "$1" "$2"; fixed_reps=$2; consumed=2 ;;
    --perf) perf=1; consumed=1 ;;
    esac
}

shape_valid() { case $1 in [1-9] | 1[0-9] | 20) return 0 ;; esac; return 1; }
shape_kind() { case $1 in 4 | 5 | 16 | 17 | 18 | 19 | 20) echo rate ;; 6) echo idle ;; *) echo full ;; esac; }
shape_read_mode() { case $1 in 6) echo none ;; [1-5]) echo trunc ;; *) echo copy ;; esac; }
shape_conns() { echo 10000; }
shape_name() {
    case $1 in
    1) echo "full speed, 1 pub, 100 subs, 1 KiB" ;;
    2) echo "full speed, 1 pub, 100 subs, 64 B" ;;
    3) echo "full speed, 1 pub, 1000 subs, 64 B" ;;
    4) echo "10,000 msg/s, 100 subs, 64 B" ;;
    5) echo "1,000 msg/s, 100 subs, 64 B" ;;
    6) echo "10,000 idle connections" ;;
    7) echo "full speed, 1 pub, 100 subs × 64 B" ;;
    8) echo "full speed, 1 pub, 1000 subs × 64 B" ;;
    9) echo "full speed, 1 pub, 100 subs × 1 KiB" ;;
    10) echo "full speed, 100 × 64 B, default queue (no stuck reader)" ;;
    11) echo "full speed, 100 × 64 B, default queue + 1 stuck reader" ;;
    12) echo "full speed, 1000 × 64 B, default queue (no stuck reader)" ;;
    13) echo "full speed, 1000 × 64 B, default queue + 1 stuck reader" ;;
    14) echo "full speed, 100 × 1 KiB, default queue (no stuck reader)" ;;
    15) echo "full speed, 100 × 1 KiB, default queue + 1 stuck reader" ;;
    16) echo "10,000 msg/s, 100 subs × 64 B, byte counters read every 5 ms" ;;
    17) echo "10,000 msg/s, 100 subs × 64 B, byte counters read every 5 ms + 1 trickle reader" ;;
    18) echo "1,000 msg/s, 100 subs × 64 B" ;;
    19) echo "1,000 msg/s, 100 subs × 64 B + 1 trickle reader" ;;
    20) echo "10,000 msg/s, 100 subs × 64 B, every read at once (information)" ;;
    esac
}
shape_label() { # short, for the charts
    case $1 in
    1 | 9 | 14) echo "$1: 100 × 1 KiB" ;; 15) echo "15: 100 × 1 KiB + stuck" ;;
    2 | 7 | 10) echo "$1: 100 × 64 B" ;; 11) echo "11: 100 × 64 B + stuck" ;;
    3 | 8 | 12) echo "$1: 1000 × 64 B" ;; 13) echo "13: 1000 × 64 B + stuck" ;;
    4 | 16 | 20) echo "$1: 10,000 msg/s" ;; 17) echo "17: 10,000 msg/s + trickle" ;;
    5 | 18) echo "$1: 1,000 msg/s" ;; 19) echo "19: 1,000 msg/s + trickle" ;;
    6) echo "6: 10,000 idle" ;;
    esac
}
shape_args() {
    local t="--duration $duration --warmup $warmup" ordinary trunc
    ordinary=$(shape_read_args 7)
    trunc=$(shape_read_args 1)
    local f100="--subs 100 --pubs 1 --size 64 --rate 0 --verify 2 $ordinary $t"
    local f1000="--subs 1000 --pubs 1 --size 64 --rate 0 --verify 2 $ordinary $t"
    local f1k="--subs 100 --pubs 1 --size 1024 --rate 0 --verify 2 $ordinary $t"
    local r10k="--subs 100 --pubs 1 --size 64 --rate 10000 --verify 2 $ordinary $t"
    local r1k="--subs 100 --pubs 1 --size 64 --rate 1000 --verify 2 $ordinary $t"
    case $1 in
    1) echo "--subs 100 --pubs 1 --size 1024 --rate 0 --verify 2 $trunc $t" ;;
    2) echo "--subs 100 --pubs 1 --size 64 --rate 0 --verify 2 $trunc $t" ;;
    3) echo "--subs 1000 --pubs 1 --size 64 --rate 0 --verify 2 $trunc $t" ;;
    4) echo "--subs 100 --pubs 1 --size 64 --rate 10000 --verify 10 --read-interval 5000 $trunc $t" ;;
    5) echo "--subs 100 --pubs 1 --size 64 --rate 1000 --verify 10 --read-interval 5000 $trunc $t" ;;
    6) echo "--subs 10000 --pubs 0 --duration 3" ;;
    7 | 10) echo "$f100" ;;
    8 | 12) echo "$f1000" ;;
    9 | 14) echo "$f1k" ;;
    11) echo "$f100 $stuck" ;;
    13) echo "$f1000 $stuck" ;;
    15) echo "$f1k $stuck" ;;
    16) echo "$r10k $interval" ;;
    17) echo "$r10k $interval $trickle" ;;
    18) echo "$r1k" ;;
    19) echo "$r1k $trickle" ;;
    20) echo "$r10k" ;;
    esac
}
# --max-queue for ringcast and the baseline ("" = their defaults).
shape_queue() { # shape relay
    case $2 in ringcast | baseline) ;; *) echo ""; return ;; esac
    case $1 in 7 | 8 | 9) echo "$big_queue" ;; *) echo "" ;; esac
}
shape_reps() { case $1 in 16 | 17 | 18 | 19 | 20) echo "$fixed_reps" ;; *) echo "$reps" ;; esac; }
# The run without the extra reader that a shape is measured against (run as a pair with it).
shape_control() { case $1 in 11) echo 10 ;; 13) echo 12 ;; 15) echo 14 ;; 17) echo 16 ;; 19) echo 18 ;; *) echo "" ;; esac; }
shape_headline() {
    case $(shape_kind "$1") in
    full) echo .deliveries_per_s ;;
    rate) echo .latency_us.p99 ;;
    idle) echo "$idle_rss_per_conn" ;;
    esac
}

# ---- perf ----------------------------------------------------------------------------------
perf_md=""
suite_results() { :; } # no verdicts in results.jsonl (the floors are in summary.md)
suite_extra_runs() {
    local relay pbase attempt samples
    [ "$perf" = 1 ] && selected 9 || return 0
    for relay in ringcast baseline; do
        has_relay "$relay" || continue
        pbase="$out/raw/perf-9-$relay"
        if [ "$resume" = 1 ] && [ -s "$pbase.json" ] && [ -s "$pbase.data" ]; then :; else
            for attempt in 1 2; do
                run_attempt 9 "$relay" 0 perf || continue 2
                jq -e "(.other_cpu // 0) > $other_load_limit" "$pbase.json" >/dev/null || break
                [ $attempt = 2 ] || say "perf run, $relay: other processes used $(jq .other_cpu "$pbase.json") of a core meanwhile: running it again"
            done
        fi
        [ -s "$pbase.data" ] || { say "perf recorded nothing for $relay ($pbase.perf.log)"; continue; }
        # Self time by binary, by binary and symbol; and inclusive time by symbol.
        perf report -i "$pbase.data" --no-children --sort dso --stdio -g none 2>/dev/null |
            grep -v '^#' | grep -v '^$' >"$pbase.dso.txt" || true
        perf report -i "$pbase.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.7 2>/dev/null |
            grep -v '^#' | grep -v '^$' >"$pbase.sym.txt" || true
        perf report -i "$pbase.data" --children --sort sym --stdio -g none --percent-limit 8 2>/dev/null |
            grep -v '^#' | grep -v '^$' >"$pbase.children.txt" || true
        samples=$(perf report -i "$pbase.data" --stdio --no-children --sort dso 2>/dev/null | sed -n 's/^# Samples: \([^ ]*\).*/\1/p' | head -1)
        perf_md+="#### \`perf record -e cpu-clock -g\`: $relay, shape 9 (100 × 1 KiB), 4 s of the measured window"$'\n\n'
        perf_md+="$(summary_line 9 "$pbase.json"); ${samples:-?} samples of the server process."$'\n\n'
        perf_md+="Self time by binary (\`perf report --no-children --sort dso\`):"$'\n\n```\n'"$(cat "$pbase.dso.txt")"$'\n```\n\n'
        perf_md+="Self time by binary and symbol, entries ≥ 0.7 % (\`perf report --no-children --sort dso,sym -g none\`):"$'\n\n```\n'"$(head -40 "$pbase.sym.txt")"$'\n```\n\n'
        perf_md+="Inclusive time, entries ≥ 8 % (\`perf report --children --sort sym -g none\`):"$'\n\n```\n'"$(head -40 "$pbase.children.txt")"$'\n```\n\n'
    done
}

# ---- summary -------------------------------------------------------------------------------
# Connections the relay closed besides the healthy ones flood counts in errors: the extra reader
# (flood cannot see that a never-reading subscriber was cut, the server's descriptors can).
extra_gone='((.config.subs + .config.pubs + .slow_subs.count) - (.server_fds.end - .server_fds.start) - .errors) >= 1'
cut_count() { # shape relay: "k/n"
    echo "$(values "$1" "$2" "select($extra_gone) | 1" | wc -l)/$(values "$1" "$2" 1 | wc -l)"
}
pair_ratios() { # control shape relay: per repetition, shape's deliveries/s over control's
    jq -r -s --arg a "$1" --arg b "$2" --arg r "$3" '
        [.[] | select(.used and .relay == $r and (.shape == $a or .shape == $b))]
        | group_by(.rep)[] | select(length == 2)
        | (map(select(.shape == $a))[0].figures.deliveries_per_s) as $x
        | (map(select(.shape == $b))[0].figures.deliveries_per_s) as $y
        | if $x > 0 then $y / $x else empty end' "$(results)" | awk '{ printf "%.2f\n", $1 }'
}
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "-" || t == "-") { print "n/a"; exit }
    ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "PASS" : "FAIL" }'; }
rc_=ringcast; bl_=baseline; rd_=redis
each() { # shape jq-expression kind: "ringcast / baseline / redis" medians
    echo "$(fmt "$(med "$1" $rc_ "$2")" "$3") / $(fmt "$(med "$1" $bl_ "$2")" "$3") / $(fmt "$(med "$1" $rd_ "$2")" "$3")"
}
saturated() { # shape: a note when flood used (nearly) its whole core
    local r s=""
    for r in $rc_ $bl_ $rd_; do
        awk -v c="$(med "$1" "$r" .flood_cpu)" 'BEGIN { exit !(c != "-" && c >= 0.95) }' && s="$s${s:+, }$r"
    done
    [ -z "$s" ] || echo "flood saturated ($s)"
}
cols() { # shape: the trailing CPU/load/lossless columns
    echo "$(each "$1" .server_cpu cpu) | $(each "$1" .flood_cpu cpu) | $(each "$1" .other_cpu cpu) | $(trouble "$1" $rc_) / $(trouble "$1" $bl_) / $(trouble "$1" $rd_)"
}
count() { case "$1" in PASS*) pass=$((pass + 1)) ;; FAIL*) fail=$((fail + 1)) ;; esac; }
med_of() { values "$@" | median; }
pr() { pair_ratios "$1" "$2" "$3" | median; } # control shape relay

floor_rows() { # shape: its rows of the floors table
    local shape=$1 name note k a b c v fl lossy ctl pa lim a0
    name=$(shape_name "$shape")
    note=$(saturated "$shape"); [ -z "$note" ] || name="$name ($note)"
    note=$(shape_labels "$shape"); [ -z "$note" ] || name="$name ($note)"
    case $shape in
    7 | 8 | 9)
        case $shape in 7) k=9 ;; 8) k=13 ;; 9) k=2.2 ;; esac
        a=$(med "$shape" $rc_ .deliveries_per_s); c=$(med "$shape" $bl_ .deliveries_per_s); b=$(med "$shape" $rd_ .deliveries_per_s)
        lossy=""; lossless_all "$shape" $rc_ || lossy=" (ringcast lossy)"
        v=$(verdict "$(ratio "$a" "$c")" ">=" 0.95); [ -n "$lossy" ] && [ "$v" = PASS ] && v="FAIL$lossy"
        count "$v"
        echo "| $shape | $name | deliveries/s | $(fmt "$a" rate) | $(fmt "$c" rate) | $(fmt "$b" rate) | $(ratio "$a" "$c")× baseline | ≥ 0.95× baseline (goal 1.0×) | $v | $(cols "$shape") |"
        fl=$(awk -v k="$k" -v b="$b" -v c="$c" 'BEGIN { if (b == "-" || c == "-") print "-"; else { x = k * b; y = 0.95 * c; print (x < y ? x : y) } }')
        v=$(verdict "$(ratio "$a" "$fl")" ">=" 1); [ -n "$lossy" ] && [ "$v" = PASS ] && v="FAIL$lossy"
        count "$v"
        echo "| $shape | | deliveries/s | | | | $(ratio "$a" "$b")× Redis; $(ratio "$a" "$fl")× the floor ($(fmt "$fl" rate)) | ≥ min($k× Redis, 0.95× baseline) | $v | | | | |"
        ;;
    10 | 12 | 14)
        a=$(med "$shape" $rc_ .deliveries_per_s); c=$(med "$shape" $bl_ .deliveries_per_s); b=$(med "$shape" $rd_ .deliveries_per_s)
        echo "| $shape | $name | deliveries/s | $(fmt "$a" rate) | $(fmt "$c" rate) | $(fmt "$b" rate) | $(ratio "$a" "$c")× baseline, $(ratio "$a" "$b")× Redis | (the run without the stuck reader) | | $(cols "$shape") |"
        ;;
    11 | 13 | 15)
        ctl=$(shape_control "$shape")
        a=$(pr "$ctl" "$shape" $rc_); c=$(pr "$ctl" "$shape" $bl_); b=$(pr "$ctl" "$shape" $rd_)
        pa=$(med "$shape" $rc_ .deliveries_per_s)
        v=$(verdict "$a" ">=" 0.9); count "$v"
        echo "| $shape | $name | healthy deliveries/s with / without it (median of the pairs) | $a ($(fmt "$pa" rate)) | $c ($(fmt "$(med "$shape" $bl_ .deliveries_per_s)" rate)) | $b ($(fmt "$(med "$shape" $rd_ .deliveries_per_s)" rate)) | $a | ≥ 0.9 | $v | $(cols "$shape") |"
        v=PASS; lossless_all "$shape" $rc_ || v=FAIL; count "$v"
        echo "| $shape | | healthy subscribers lossless | $(trouble "$shape" $rc_) | $(trouble "$shape" $bl_) | $(trouble "$shape" $rd_) | | nothing lost | $v | | | | |"
        a=$(cut_count "$shape" $rc_); v=FAIL; [ "${a%/*}" = "${a#*/}" ] && [ "${a#*/}" != 0 ] && v=PASS; count "$v"
        echo "| $shape | | stuck reader cut (runs) | $a | $(cut_count "$shape" $bl_) | $(cut_count "$shape" $rd_) (no limit set) | | cut (disconnect policy) | $v | | | | |"
        ;;
    20)
        a=$(med "$shape" $rc_ .latency_us.p99); c=$(med "$shape" $bl_ .latency_us.p99); b=$(med "$shape" $rd_ .latency_us.p99)
        echo "| $shape | $name | p99 latency | $(fmt "$a" us) | $(fmt "$c" us) | $(fmt "$b" us) | $(ratio "$a" "$b")× Redis ($(ratio "$a" "$c")× baseline) | (information: flood's core is the limit) | | $(cols "$shape") |"
        ;;
    16 | 18)
        a=$(med "$shape" $rc_ .latency_us.p99); c=$(med "$shape" $bl_ .latency_us.p99); b=$(med "$shape" $rd_ .latency_us.p99)
        v=$(verdict "$(ratio "$a" "$b")" "<=" 1.15); lossless_all "$shape" $rc_ || v="FAIL (ringcast lossy)"; count "$v"
        echo "| $shape | $name | p99 latency | $(fmt "$a" us) | $(fmt "$c" us) | $(fmt "$b" us) | $(ratio "$a" "$b")× Redis ($(ratio "$a" "$c")× baseline) | ≤ 1.15× Redis | $v | $(cols "$shape") |"
        if [ "$shape" = 18 ]; then
            a=$(med 18 $rc_ .server_cpu); c=$(med 18 $bl_ .server_cpu); b=$(med 18 $rd_ .server_cpu)
            v=$(verdict "$(ratio "$a" "$b")" "<=" 1.15); count "$v"
            echo "| 18 | | server CPU (cores) | $(fmt "$a" cpu) | $(fmt "$c" cpu) | $(fmt "$b" cpu) | $(ratio "$a" "$b")× Redis ($(ratio "$a" "$c")× baseline) | ≤ 1.15× Redis | $v | | | | |"
        fi
        ;;
    17 | 19)
        ctl=$(shape_control "$shape")
        a=$(med "$shape" $rc_ .latency_us.p99); c=$(med "$shape" $bl_ .latency_us.p99); b=$(med "$shape" $rd_ .latency_us.p99)
        a0=$(med "$ctl" $rc_ .latency_us.p99)
        lim=$(awk -v x="$a0" 'BEGIN { if (x == "-") print "-"; else print 1.5 * x + 1000 }')
        v=$(verdict "$a" "<=" "$lim"); lossless_all "$shape" $rc_ || v="FAIL (ringcast lossy)"; count "$v"
        echo "| $shape | $name | healthy p99 latency | $(fmt "$a" us) | $(fmt "$c" us) | $(fmt "$b" us) | $(ratio "$a" "$a0")× the run without it ($(fmt "$a0" us)) | ≤ 1.5× without + 1 ms = $(fmt "$lim" us) | $v | $(cols "$shape") |"
        echo "| $shape | | trickle reader cut (runs) | $(cut_count "$shape" $rc_) | $(cut_count "$shape" $bl_) | $(cut_count "$shape" $rd_) | | (information) | | | | | |"
        ;;
    esac
}

old_rows() { # shape: its row(s) of issue 2's table
    local shape=$1 name note q a b c fds want
    name=$(shape_name "$shape")
    note=$(shape_labels "$shape"); [ -z "$note" ] || name="$name ($note)"
    case $shape in
    6)
        q=$idle_rss_per_conn
        a=$(med 6 $rc_ "$q"); c=$(med 6 $bl_ "$q"); b=$(med 6 $rd_ "$q")
        fds='.server_fds.end - .server_fds.start'
        echo "| $name | RSS added per connection | $(fmt "$a" bytes) | $(fmt "$c" bytes) | $(fmt "$b" bytes) | $(ratio "$a" "$c") | $(ratio "$a" "$b") | < 2048 B | | | | fds +$(med 6 $rc_ "$fds") / +$(med 6 $bl_ "$fds") / +$(med 6 $rd_ "$fds") |"
        ;;
    1 | 2 | 3)
        case $shape in 1) want="≥ 3×" ;; 2) want="≥ 9×" ;; *) want="≥ 13×" ;; esac
        a=$(med "$shape" $rc_ .deliveries_per_s); c=$(med "$shape" $bl_ .deliveries_per_s); b=$(med "$shape" $rd_ .deliveries_per_s)
        echo "| $name | deliveries/s | $(fmt "$a" rate) | $(fmt "$c" rate) | $(fmt "$b" rate) | $(ratio "$a" "$c") | $(ratio "$a" "$b") | $want (vs Redis) | $(cols "$shape") |"
        ;;
    4 | 5)
        a=$(med "$shape" $rc_ .latency_us.p99); c=$(med "$shape" $bl_ .latency_us.p99); b=$(med "$shape" $rd_ .latency_us.p99)
        want=$([ "$shape" = 4 ] && echo "≤ 1" || echo "≤ 1.15")
        echo "| $name | p99 latency | $(fmt "$a" us) | $(fmt "$c" us) | $(fmt "$b" us) | $(ratio "$a" "$c") | $(ratio "$a" "$b") | $want (vs Redis) | $(cols "$shape") |"
        if [ "$shape" = 5 ]; then
            a=$(med 5 $rc_ .server_cpu); c=$(med 5 $bl_ .server_cpu); b=$(med 5 $rd_ .server_cpu)
            echo "| $name | server CPU (cores) | $(fmt "$a" cpu) | $(fmt "$c" cpu) | $(fmt "$b" cpu) | $(ratio "$a" "$c") | $(ratio "$a" "$b") | ≤ 1.15 (vs Redis) | | | | |"
        fi
        ;;
    esac
}

counter_rows() { # shape: ringcast's own counters (from /metrics)
    local s='(.metrics.sends // 0)' fps sps
    fps=$(med "$1" $rc_ "(if $s > 0 then .metrics.frames / .metrics.sends else empty end)")
    sps=$(med "$1" $rc_ "(if $s > 0 and .metrics.frames > 0 then .deliveries_per_s / (.metrics.frames / .metrics.sends) else empty end)")
    [ "$fps" = - ] || fps=$(awk -v x="$fps" 'BEGIN { printf "%.1f", x }')
    echo "| $1 | $fps | $(fmt "$sps" rate) | $(med "$1" $rc_ .metrics.stalls) | $(med "$1" $rc_ .metrics.slow_cuts) | $(med "$1" $rc_ .metrics.dropped) | $(each "$1" '(.sub_reads / (.window_s + .config.warmup))' rate) |"
}

suite_summary() {
    local shape floor_shapes=() old_shapes=() q
    pass=0 fail=0
    for shape in "${shape_list[@]}"; do
        if [ "$shape" -le 6 ]; then old_shapes+=("$shape"); else floor_shapes+=("$shape"); fi
    done
    echo "### tools/bench $suite: ringcast vs the batching baseline and Redis pub/sub ($(date -u '+%Y-%m-%d'))"
    echo
    echo "Command: $cmd_text. Commit: $built_from. Date: $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Machine: \`nproc\` $(nproc) (${cpu_model:-unknown}), \`uname -r\` $(uname -r); $pinning;"
    echo "${duration} s measured after ${warmup} s of warm-up. Every run is a line of results.jsonl; the raw"
    echo "JSON, logs and /metrics (not in git) and the binaries run (copied at the start) are in ${out#"$root"/}/raw and bin."
    for q in "${notes[@]}"; do echo "Note: $q."; done
    if [ ${#floor_shapes[@]} -gt 0 ]; then
        echo
        echo "#### Floors: subscribers read as ordinary clients do (read mode \`copy\`: \`$(flood_read_args copy)\`)"
        echo
        echo "Full speed: median of $reps, \`--max-queue $big_queue\` for ringcast and the baseline in shapes 7-9,"
        echo "their defaults in 10-15 (ringcast 32 MiB, the baseline 8 MiB); the stuck reader (\`$stuck\`) is compared with the run without"
        echo "it, as pairs run back to back (median of the pairs' ratios). Fixed rates: median of $fixed_reps, defaults;"
        echo "the trickle reader is \`$trickle\`; in 16-17 the 98 byte-counting subscribers read every 5 ms"
        echo "(\`$interval\`), since without it flood uses its whole core at 10,000 msg/s (shape 20, for"
        echo "information). \"holds\" is computed from the medians in this table."
        echo
        echo "| # | shape | figure | ringcast | baseline | Redis | ratio | floor | holds | server CPU rc / base / redis | flood CPU rc / base / redis | other load rc / base / redis | lossless rc / base / redis |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        for shape in "${floor_shapes[@]}"; do floor_rows "$shape"; done
        echo
        echo "Floors: $pass held, $fail did not."
        echo
        echo "ringcast's own counters (\`/metrics\` read once after each run, so they include set-up and"
        echo "warm-up; medians): frames per send, sends/s (deliveries/s over frames per send), publisher"
        echo "stalls, slow-consumer disconnects, frames dropped."
        echo
        echo "| # | frames/send | sends/s | publisher stalls | slow-consumer cuts | frames dropped | subscriber reads/s (rc / base / redis) |"
        echo "| --- | --- | --- | --- | --- | --- | --- |"
        for shape in "${floor_shapes[@]}"; do counter_rows "$shape"; done
    fi
    if [ ${#old_shapes[@]} -gt 0 ]; then
        echo
        echo "#### Issue 2's shapes (cheaper reads: read mode \`trunc\`, byte-counting subscribers read with MSG_TRUNC, \`$(flood_read_args trunc)\`; 4-5 also \`--read-interval 5000\`), median of $reps"
        echo
        echo "| shape | figure | ringcast | baseline | Redis | ringcast/baseline | ringcast/Redis | issue 2 wants | server CPU rc / base / redis | flood CPU rc / base / redis | other load rc / base / redis | lossless rc / base / redis |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        for shape in "${old_shapes[@]}"; do old_rows "$shape"; done
    fi
    echo
    echo "Cores: server and flood CPU from the processes' own accounting over the measured window;"
    echo "\"other load\" is the CPU every other process used meanwhile (should be near 0; the"
    echo "server's and flood's own figures include the kernel's network work done in their context)."
    echo "The baseline does not pace publishers: a subscriber more than --max-queue behind is cut,"
    echo "which shows as lossy runs. A stuck or trickle reader counts as cut when the server closed"
    echo "one more connection than flood saw closed (its descriptors at the end of the window)."
    echo "A shape labelled \"noisy (spread N%)\" still had its repetitions' headline figure spread more"
    echo "than $spread_limit % after $max_tries tries; \"busy machine\": other processes used 5 % of a core or more"
    echo "for the whole --quiet-wait before the run."
    echo
    for q in deliveries latency memory; do
        [ ! -e "$out/$q.png" ] || echo "![$q]($q.png)"
    done
    echo
    echo "Commands (flood pinned with taskset -c 1; PORT and PID are the server's, MPORT a free port):"
    echo
    for shape in "${shape_list[@]}"; do
        q=$(shape_queue "$shape" ringcast)
        echo "- shape $shape: \`flood --proto line|redis --port PORT --server-pid PID $(shape_args "$shape")\`${q:+ (ringcast and baseline with \`--max-queue $q\`)}"
    done
    echo "- ringcast: \`$(server_cmd ringcast "")\`"
    echo "- baseline: \`$(server_cmd baseline "")\`"
    echo "- redis: \`$(server_cmd redis "")\`"
    if [ -n "$perf_md" ]; then
        echo
        printf '%s' "$perf_md"
    fi
}
