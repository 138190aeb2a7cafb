# shellcheck shell=bash
# tools/bench: one measured run, the interleaved schedule, reruns of noisy shapes, results.jsonl.
# Sourced by tools/bench.
#
# Every run appends one record to raw/runs.jsonl as soon as it is done (so --resume knows what is
# there); write_results turns that into results.jsonl, marking which records the summary uses.
# A record: suite, shape, relay, rep, round (the try, 1-3: a noisy shape's repetitions run again), attempt
# (a run is repeated, twice at most, when other processes used > 0.2 of a core during its
# window), seq, read_mode, read_args, labels, final (the attempt kept), figures (flood's figures,
# ringcast's /metrics counters, kernel memory for idle shapes).

other_load_limit=0.2 # cores other processes may use during a measured window (flood's other_cpu)
spread_limit=15      # % (max - min) / median of a shape's headline figure over its repetitions
max_tries=3

runs_file() { echo "$out/raw/runs.jsonl"; }
next_seq() { local f; f=$(runs_file); [ -s "$f" ] && echo $(($(wc -l <"$f") + 1)) || echo 1; }

# ---- the plan ------------------------------------------------------------------------------
# A shape and the run it is compared with (its control: the same shape without the stuck or
# trickle reader) go together, per relay, back to back: a "unit".
plan_units() {
    local s t c is_control r
    IFS=, read -r -a shape_list <<<"$shapes"
    units=()
    for s in "${shape_list[@]}"; do
        is_control=0
        for t in "${shape_list[@]}"; do [ "$(shape_control "$t")" = "$s" ] && is_control=1; done
        [ $is_control = 1 ] && continue
        c=$(shape_control "$s")
        if [ -n "$c" ] && selected "$c"; then units+=("$c $s"); else units+=("$s"); fi
    done
    max_reps=1
    for s in "${shape_list[@]}"; do
        r=$(shape_reps "$s")
        if [ "$r" -gt "$max_reps" ]; then max_reps=$r; fi
    done
}
selected() { local s; for s in "${shape_list[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

rotated() { # n list...: the list rotated left by n (which relay goes first)
    local n=$1; shift
    local a=("$@")
    [ ${#a[@]} -gt 0 ] || return 0
    n=$((n % ${#a[@]}))
    printf '%s\n' "${a[@]:$n}" "${a[@]:0:$n}"
}

unit_members() { # unit rep: the unit's shapes that have this repetition, in this rep's order
    local s m=()
    for s in $1; do [ "$(shape_reps "$s")" -ge "$2" ] && m+=("$s"); done
    # Within a pair, the run without the extra reader goes first in odd repetitions.
    if [ ${#m[@]} = 2 ] && [ $(($2 % 2)) = 0 ]; then m=("${m[1]}" "${m[0]}"); fi
    [ ${#m[@]} = 0 ] || printf '%s\n' "${m[@]}"
}

have_run() { # shape relay rep try: a kept record exists
    local f; f=$(runs_file)
    [ -s "$f" ] || return 1
    jq -e --arg s "$1" --arg r "$2" --argjson rep "$3" --argjson t "$4" \
        'select(.shape == $s and .relay == $r and .rep == $rep and .round == $t and .final)' "$f" >/dev/null
}

# One repetition of a unit for some relays: each relay runs the unit's shapes back to back. With
# --resume a relay whose runs are all there is skipped; a pair missing one runs again as a pair.
run_unit_rep() { # unit rep try relays...
    local unit=$1 rep=$2 try=$3 relay shape missing members
    shift 3
    mapfile -t members < <(unit_members "$unit" "$rep")
    [ ${#members[@]} -gt 0 ] || return 0
    for relay in "$@"; do
        missing=0
        for shape in "${members[@]}"; do have_run "$shape" "$relay" "$rep" "$try" || missing=1; done
        [ $missing = 1 ] || continue
        for shape in "${members[@]}"; do run_one "$shape" "$relay" "$rep" "$try"; done
    done
}

run_schedule() {
    local rep unit order
    for rep in $(seq "$max_reps"); do
        # Each shape once per relay back to back, the relay that goes first rotating per rep.
        mapfile -t order < <(rotated $((rep - 1)) "${want_relays[@]}")
        for unit in "${units[@]}"; do run_unit_rep "$unit" "$rep" 1 "${order[@]}"; done
    done
}

# ---- one run -------------------------------------------------------------------------------
run_one() { # shape relay rep try
    local shape=$1 relay=$2 rep=$3 try=$4 attempt other labels
    for attempt in 1 2 3; do
        run_attempt "$shape" "$relay" "$rep" || return 0
        labels='[]'
        [ "$run_noisy" = 0 ] || labels='["noisy"]'
        other=$(jq '.other_cpu // 0' "$run_base.json")
        if awk -v o="$other" -v l="$other_load_limit" 'BEGIN { exit !(o > l) }'; then
            if [ $attempt -lt 3 ]; then
                # Other work during the window skews the figures: keep the record, run it again.
                say "$shape $relay rep $rep: other processes used $other of a core meanwhile: running it again"
                append_record "$shape" "$relay" "$rep" "$try" "$attempt" false \
                    "$(jq -c --arg o "$other" '. + ["other load \($o): ran again"]' <<<"$labels")"
                continue
            fi
            labels=$(jq -c --arg o "$other" '. + ["other load \($o)"]' <<<"$labels")
        fi
        append_record "$shape" "$relay" "$rep" "$try" "$attempt" true "$labels"
        return 0
    done
}

# Runs flood once against a fresh server. Sets run_base (raw/NNNN-shape-relay-rREP: .json,
# .cmd, .flood.log, .server.log, .metrics), run_metrics, run_kernel and run_noisy; fails when
# there is no result. With a 4th argument "perf", samples the server with perf record.
run_attempt() { # shape relay rep [perf]
    local shape=$1 relay=$2 rep=$3 with_perf=${4:-} started=0 args rc=0
    run_base="$out/raw/$(printf '%04d' "$(next_seq)")-$shape-$relay-r$rep"
    [ -z "$with_perf" ] || run_base="$out/raw/perf-$shape-$relay"
    wait_quiet
    for _ in 1 2 3; do # a port picked for Redis, NATS or /metrics may be taken meanwhile
        if start_server "$relay" "$run_base.server.log" "$(shape_queue "$shape" "$relay")"; then started=1; break; fi
    done
    [ $started = 1 ] || return 1
    args="--proto $(proto_of "$relay") --port $server_port --server-pid $server_pid $(shape_args "$shape")"
    {
        echo "${pin_flood[*]} build/bench/flood/flood $args"
        server_cmd "$relay" "$(shape_queue "$shape" "$relay")"
    } >"$run_base.cmd"
    [ -z "$with_perf" ] || start_perf
    local slab0="" sock0=""
    if [ "$(shape_kind "$shape")" = idle ]; then slab0=$(slab_kb); sock0=$(tcp_mem_pages); fi
    # shellcheck disable=SC2086
    "${pin_flood[@]}" "$flood_bin" $args --json "$run_base.json" 2>"$run_base.flood.log" &
    flood_pid=$!
    run_kernel='{}'
    [ -z "$slab0" ] || run_kernel=$(sample_kernel_memory "$(shape_conns "$shape")" "$slab0" "$sock0")
    wait "$flood_pid" || rc=$?
    flood_pid=""
    if [ -n "$perf_pid" ]; then wait "$perf_pid" 2>/dev/null || true; perf_pid=""; fi
    run_metrics=$(read_metrics "$run_base.metrics")
    stop_server
    if [ $rc -ne 0 ] || [ ! -s "$run_base.json" ]; then
        say "$shape $relay rep $rep: flood exited $rc: $(tail -1 "$run_base.flood.log")"
        rm -f "$run_base.json"
        return 1
    fi
    say "$shape $relay rep $rep: $(summary_line "$shape" "$run_base.json")"
}

# Sample the server for 4 s inside the measured window (it starts after set-up and the warm-up;
# perf shares flood's core).
start_perf() {
    (
        sleep "$(awk -v w="$warmup" 'BEGIN { print w + 1.5 }')"
        exec "${pin_flood[@]}" perf record -q -e cpu-clock -g -p "$server_pid" -o "$run_base.data" -- sleep 4
    ) >"$run_base.perf.log" 2>&1 &
    perf_pid=$!
}

summary_line() { # shape json
    if [ "$(shape_kind "$1")" = idle ]; then
        jq -r '"server RSS +\(.server_rss_kb.end - .server_rss_kb.start) KiB, fds +\(.server_fds.end - .server_fds.start)"' "$2"
    else
        jq -r '"\(.deliveries_per_s|floor) deliveries/s, p99 \(.latency_us.p99) us, lost \(.lost), errors \(.errors), flood cpu \(.flood_cpu), server cpu \(.server_cpu), other load \(.other_cpu)" + (if .slow_subs then ", extra reader: \(.slow_subs.bytes) B read" else "" end) + (if (.driver_overhead_us.samples // 0) > 0 then ", driver overhead p50 \(.driver_overhead_us.p50) us p99 \(.driver_overhead_us.p99) us" else "" end)' "$2"
    fi
}

# ---- kernel memory of idle connections -----------------------------------------------------
# Slab (the kernel's socket, inode and dentry objects) and the TCP socket buffers of
# /proc/net/sockstat, sampled before flood connects and once the server holds every connection.
# Both ends of each loopback connection are on this machine, so the slab figure covers two
# sockets per connection; other work on the machine shows up in it too.
slab_kb() { awk '$1 == "Slab:" { print $2 }' /proc/meminfo; }
tcp_mem_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sample_kernel_memory() { # conns slab0 sock0: JSON
    local n=$1 fds0 fds
    fds0=$(fd_count "$server_pid")
    # Until the server holds them all (flood holds them for --duration once connected).
    while kill -0 "$flood_pid" 2>/dev/null; do
        fds=$(fd_count "$server_pid")
        [ "$fds" -ge $((fds0 + n)) ] && break
        sleep 0.2
    done
    sleep 0.3
    jq -nc --argjson n "$n" --argjson s0 "$2" --argjson s1 "$(slab_kb)" --argjson m0 "$3" \
        --argjson m1 "$(tcp_mem_pages)" --argjson f "$(fd_count "$server_pid")" --argjson f0 "$fds0" \
        '{conns: $n, server_fds_added: ($f - $f0), slab_kb: ($s1 - $s0), tcp_mem_pages: ($m1 - $m0)}'
}

# ---- records -------------------------------------------------------------------------------
append_record() { # shape relay rep try attempt final labels-json
    jq -c --arg suite "$suite" --arg shape "$1" --arg relay "$2" --argjson rep "$3" \
        --argjson round "$4" --argjson attempt "$5" --argjson final "$6" --argjson labels "$7" \
        --argjson seq "$(next_seq)" --arg mode "$(shape_read_mode "$1")" \
        --arg read_args "$(shape_read_args "$1")" --arg raw "raw/$(basename "$run_base")" \
        --argjson metrics "$run_metrics" --argjson kernel "$run_kernel" \
        --arg time "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" '
        {suite: $suite, shape: $shape, relay: $relay, rep: $rep, round: $round, attempt: $attempt,
         seq: $seq, time: $time, read_mode: $mode, read_args: $read_args, labels: $labels,
         final: $final, raw: $raw,
         figures: ({config: (.config | {subs, pubs, size, rate, duration, warmup, verify,
                        read_interval_us, spin_us, copy_reads, rcvlowat, read_mode, slow_subs,
                        slow_rate})}
                   + {window_s, published, deliveries, deliveries_per_s, payload_mb_per_s, lost,
                      duplicated, reordered, corrupt, errors, latency_us, driver_overhead_us,
                      pub_lag_us, flood_cpu, flood_spin_cpu, server_cpu, other_cpu, softirqd_cpu,
                      server_rss_kb, server_fds, sub_reads, slow_subs}
                   + {metrics: $metrics, kernel: $kernel})}' "$run_base.json" >>"$(runs_file)"
}

# ---- noisy shapes --------------------------------------------------------------------------
headline_values() { # shape relay try: the headline figure of each repetition's kept run
    jq -r --arg s "$1" --arg r "$2" --argjson t "$3" \
        "select(.shape == \$s and .relay == \$r and .round == \$t and .final) | [.rep, .seq, (.figures | $(shape_headline "$1") // empty)] | @tsv" \
        "$(runs_file)" | sort -k1,1n -k2,2n | awk '{ v[$1] = $3 } END { for (r in v) print v[r] }'
}
spread_pct() { # values on stdin: (max - min) / median in %, 0 with fewer than 2
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR < 2) { print 0; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        if (m == 0) { print 0; exit }
        printf "%.1f\n", (v[NR] - v[1]) / (m < 0 ? -m : m) * 100 }'
}
unit_spread() { # unit relay try: the largest spread of its shapes
    local s worst=0 x
    for s in $1; do
        x=$(headline_values "$s" "$2" "$3" | spread_pct)
        worst=$(awk -v a="$worst" -v b="$x" 'BEGIN { print (b > a) ? b : a }')
    done
    echo "$worst"
}
last_try() { # shape relay
    jq -r --arg s "$1" --arg r "$2" 'select(.shape == $s and .relay == $r) | .round' "$(runs_file)" | sort -n | tail -1
}
over_limit() { awk -v x="$1" -v l="$spread_limit" 'BEGIN { exit !(x > l) }'; }

# A unit whose repetitions spread more than 15 % for a relay runs all its repetitions again for
# that relay (the noisy relays interleaved as before), 3 tries in all; the try with the smallest
# spread is the one the summary uses, labelled "noisy (spread N%)" when even that is over.
rerun_noisy_shapes() {
    local unit relay try t noisy x rep order best best_t s choice
    choice="$out/raw/choice.tsv"
    : >"$choice"
    for unit in "${units[@]}"; do
        for try in $(seq 2 "$max_tries"); do
            noisy=()
            for relay in "${want_relays[@]}"; do
                # A relay that did not run the try before (it was not noisy) has no spread.
                x=$(unit_spread "$unit" "$relay" $((try - 1)))
                over_limit "$x" || continue
                noisy+=("$relay")
                say "shape ${unit// /+} $relay: repetitions spread $x % (> $spread_limit %): running them again (try $try of $max_tries)"
            done
            [ ${#noisy[@]} -gt 0 ] || break
            for rep in $(seq "$max_reps"); do
                mapfile -t order < <(rotated $((rep - 1)) "${noisy[@]}")
                run_unit_rep "$unit" "$rep" "$try" "${order[@]}"
            done
        done
        # Keep the try with the smallest spread per relay (the latest of equals).
        for relay in "${want_relays[@]}"; do
            t=$(last_try "${unit%% *}" "$relay"); [ -n "$t" ] || continue
            best=""; best_t=1
            for try in $(seq 1 "$t"); do
                x=$(unit_spread "$unit" "$relay" "$try")
                if [ -z "$best" ] || awk -v a="$x" -v b="$best" 'BEGIN { exit !(a <= b) }'; then best=$x; best_t=$try; fi
            done
            for s in $unit; do
                printf '%s\t%s\t%s\t%s\n' "$s" "$relay" "$best_t" "$(headline_values "$s" "$relay" "$best_t" | spread_pct)" >>"$choice"
            done
        done
    done
}

# results.jsonl: every record, with "used" (the kept attempt of the chosen try: what the summary
# reads) and, for those, a "noisy (spread N%)" label when the chosen try still spread too much.
write_results() {
    local choice="$out/raw/choice.tsv"
    [ -e "$choice" ] || : >"$choice"
    [ -s "$(runs_file)" ] || { : >"$out/results.jsonl"; say "no run produced a result"; return 0; }
    jq -c -s --rawfile choice "$choice" --argjson limit "$spread_limit" '
        ($choice | split("\n") | map(select(length > 0) | split("\t"))
            | map({key: "\(.[0]) \(.[1])", value: {round: (.[2] | tonumber), spread: (.[3] | tonumber)}})
            | from_entries) as $c
        | ([.[] | select(.final)] | group_by([.shape, .relay, .rep, .round]) | map(max_by(.seq).seq)) as $kept
        | .[]
        | ($c["\(.shape) \(.relay)"] // {round: 1, spread: 0}) as $ch
        | .used = (.final and (.seq as $s | any($kept[]; . == $s)) and .round == $ch.round)
        | .spread_pct = (if .used then $ch.spread else null end)
        | .labels += (if .used and $ch.spread > $limit then ["noisy (spread \($ch.spread)%)"]
                      elif .used then [] else ["superseded"] end)' "$(runs_file)" >"$out/results.jsonl"
}
