# shellcheck shell=bash
# tools/bench selftest: flood's own delay at a fixed rate (driver_overhead_us: from the kernel's
# receive timestamp of a verified read to the moment flood timed the arrival; see bench/README.md,
# "The driver's own delay"), against the batching baseline (bench/baseline, the minimal relay),
# with the bound that says flood's own share of a latency figure is small. Sourced by tools/bench.
#
# Shapes:
#   d10   10,000 msg/s, 1 publisher, 10 subscribers x 64 B, all 10 verified: the bound,
#         driver_overhead_us p99 (median of the repetitions) < --bound-us (50), PASS/FAIL
#   d100  the same rate to 100 subscribers, 10 verified, the byte counters read every 5 ms
#         (core's shape 4: --verify 10 --read-interval 5000): driver overhead beside the total
#         p99, no bound (information)

bound_us=50      # d10's bound on the driver overhead's p99, us
selftest_rate=10000
spin_args=""     # --spin-us US passed on to flood ("": flood's default)

suite_defaults() {
    reps=3
    duration=10
    warmup=2
    shapes=d10,d100
    relays=baseline
    relays_allowed="baseline ringcast"
}

suite_usage() {
    cat <<EOF
Usage: tools/bench selftest [options]

flood's own delay at $(rate_text "$selftest_rate") msg/s against the batching baseline (bench/baseline):
driver_overhead_us (from the kernel's receive timestamp of each verified read to the moment flood
timed the arrival) and pub_lag_us (how late fixed-rate sends went out), beside the total latency.
Server pinned to CPU 0, flood to CPU 1.

Shapes:
  d10    10 subscribers x 64 B, all verified (--verify 10); the bound: the median over the
         repetitions of driver_overhead_us p99 < --bound-us, PASS/FAIL in summary.md and
         results.jsonl
  d100   100 subscribers x 64 B, --verify 10 --read-interval 5000 (core's shape 4): driver
         overhead beside the total p99, no bound
Defaults: both shapes, the baseline, 3 reps, 10 s after 2 s of warm-up. Wants a quiet machine: a
run with other load (other_cpu > 0.2) runs again and is labelled; a FAIL there says little.

Options of this suite:
  --bound-us N      the bound on d10's driver overhead p99 (default $bound_us)
  --spin-us US      passed on to flood (default: flood's own, 200; 0 = always sleep)
  --read-mode MODE  how d100's byte counters read: copy (default), trunc, lowat
Relays: baseline (default), ringcast.
EOF
}

suite_option() {
    case "$1" in
    --bound-us) need_arg "$@"; positive "$1" "$2"; bound_us=$2; consumed=2 ;;
    --spin-us)
        need_arg "$@"
        case "$2" in '' | *[!0-9]*) bad_usage "--spin-us: expected whole microseconds, got '$2'" ;; esac
        spin_args="--spin-us $2"; consumed=2 ;;
    --read-mode) need_arg "$@"; read_mode=$2; consumed=2 ;;
    esac
}

shape_valid() { case $1 in d10 | d100) return 0 ;; esac; return 1; }
shape_kind() { echo rate; }
shape_subs() { echo "${1#d}"; }
shape_conns() { shape_subs "$1"; }
shape_queue() { echo ""; } # the relays at their defaults
shape_reps() { echo "$reps"; }
shape_control() { echo ""; }
shape_read_mode() { echo "$read_mode"; }
rate_text() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; } # 10000 -> 10,000
shape_name() {
    case $1 in
    d10) echo "$(rate_text "$selftest_rate") msg/s, 1 pub, 10 subs × 64 B, all verified" ;;
    d100) echo "$(rate_text "$selftest_rate") msg/s, 1 pub, 100 subs × 64 B, 10 verified, byte counters read every 5 ms (shape 4)" ;;
    esac
}
shape_label() { echo "$(shape_subs "$1") subs"; }
shape_args() {
    local t="--duration $duration --warmup $warmup" ra
    ra=$(shape_read_args "$1")
    case $1 in
    d10) echo "--subs 10 --pubs 1 --size 64 --rate $selftest_rate --verify 10 $ra${spin_args:+ $spin_args} $t" ;;
    d100) echo "--subs 100 --pubs 1 --size 64 --rate $selftest_rate --verify 10 --read-interval 5000 $ra${spin_args:+ $spin_args} $t" ;;
    esac
}
# The figure whose spread over the repetitions decides a rerun: the bounded one for d10.
shape_headline() { case $1 in d10) echo .driver_overhead_us.p99 ;; *) echo .latency_us.p99 ;; esac; }
shape_bounded() { [ "$1" = d10 ]; }
suite_extra_runs() { :; }

# ---- the verdict ---------------------------------------------------------------------------
# PASS when the median of the used runs' driver_overhead_us p99 is under the bound and every used
# run was lossless (a lost message is a sample missing); n/a without a figure.
selftest_verdict() { # shape relay
    local p99
    p99=$(med "$1" "$2" .driver_overhead_us.p99)
    if [ "$p99" = - ]; then echo n/a; return; fi
    if ! lossless_all "$1" "$2"; then echo "FAIL (lossy)"; return; fi
    awk -v v="$p99" -v b="$bound_us" 'BEGIN { print (v < b) ? "PASS" : "FAIL" }'
}

# results.jsonl gets the bound on every d10 record (that run's own figure against it) and, last,
# one verdict record per bounded shape and relay (no "used": the medians never read it), with
# the used runs' labels ("noisy", "other load ...": a FAIL on a busy machine says little).
suite_results() {
    local f s r p99 tmp res n labels
    f=$(results)
    [ -s "$f" ] || return 0
    tmp="$f.tmp"
    jq -c --argjson b "$bound_us" '
        if .shape == "d10" then
            (.figures.driver_overhead_us.p99) as $v
            | .bound = {figure: "driver_overhead_us.p99", limit_us: $b, value: $v,
                        result: (if $v == null then "n/a" elif $v < $b then "PASS" else "FAIL" end)}
        else . end' "$f" >"$tmp" && mv "$tmp" "$f"
    : >"$tmp" # the verdicts, appended once computed from the runs
    for s in "${shape_list[@]}"; do
        shape_bounded "$s" || continue
        for r in "${want_relays[@]}"; do
            p99=$(med "$s" "$r" .driver_overhead_us.p99)
            res=$(selftest_verdict "$s" "$r")
            n=$(values "$s" "$r" 1 | wc -l)
            labels=$(jq -s -c --arg s "$s" --arg r "$r" \
                '[.[] | select(.used and .shape == $s and .relay == $r) | .labels[]] | unique' "$f")
            jq -nc --arg shape "$s" --arg relay "$r" --argjson b "$bound_us" --arg v "$p99" \
                --arg res "$res" --argjson n "$n" --argjson labels "$labels" '
                {suite: "selftest", verdict: {shape: $shape, relay: $relay,
                 figure: "driver_overhead_us.p99", statistic: "median of the used runs",
                 runs: $n, limit_us: $b, value: (if $v == "-" then null else ($v | tonumber) end),
                 result: $res, labels: $labels}}' >>"$tmp"
        done
    done
    cat "$tmp" >>"$f"
    rm -f "$tmp"
}

# ---- summary -------------------------------------------------------------------------------
per_run() { # shape relay expr: the used runs' values in order of repetition, "a, b, c"
    [ -s "$(results)" ] || return 0
    jq -r -s --arg s "$1" --arg r "$2" \
        "[.[] | select(.used and .shape == \$s and .relay == \$r)] | sort_by(.rep) | map(.figures | ($3) // \"-\" | tostring) | join(\", \")" \
        "$(results)"
}

selftest_row() { # shape relay
    local s=$1 r=$2 bound result
    if shape_bounded "$s"; then
        bound="p99 < $bound_us us"
        result=$(selftest_verdict "$s" "$r")
        case $result in PASS) pass=$((pass + 1)) ;; FAIL*) fail=$((fail + 1)) ;; esac
    else
        bound="(information)"; result=""
    fi
    echo "| $(shape_name "$s") | $(relay_title "$r") | $(fmt "$(med "$s" "$r" .driver_overhead_us.p50)" us) | $(fmt "$(med "$s" "$r" .driver_overhead_us.p99)" us) ($(per_run "$s" "$r" .driver_overhead_us.p99)) | $bound | $result | $(fmt "$(med "$s" "$r" .latency_us.p50)" us) | $(fmt "$(med "$s" "$r" .latency_us.p99)" us) ($(per_run "$s" "$r" .latency_us.p99)) | $(fmt "$(med "$s" "$r" .pub_lag_us.p99)" us) | $(fmt "$(med "$s" "$r" .flood_cpu)" cpu) ($(fmt "$(med "$s" "$r" .flood_spin_cpu)" cpu)) | $(fmt "$(med "$s" "$r" .server_cpu)" cpu) | $(per_run "$s" "$r" .other_cpu) | $(trouble "$s" "$r") | $(shape_labels "$s") |"
}

suite_summary() {
    local s r n_runs n_used
    pass=0 fail=0
    n_runs=$(jq -c 'select(.shape)' "$(results)" | wc -l)
    n_used=$(jq -c 'select(.used)' "$(results)" | wc -l)
    echo "### tools/bench selftest: flood's own delay at $(rate_text "$selftest_rate") msg/s ($(date -u '+%Y-%m-%d'), median of $reps)"
    echo
    echo "Command: $cmd_text. Commit: $built_from. Date: $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Machine: \`nproc\` $(nproc) (${cpu_model:-unknown}), \`uname -r\` $(uname -r); $pinning."
    echo "${duration} s measured after ${warmup} s of warm-up; 1 publisher; relays at their defaults; d100's byte counters read with \`$(flood_read_args "$read_mode")\`."
    for s in "${notes[@]}"; do echo "Note: $s."; done
    echo "Runs: $n_runs measured, $n_used used (results.jsonl: every run, \"used\" marks those in the medians; d10's records carry \"bound\", and the last line the verdict)."
    echo
    echo "| shape | relay | driver overhead p50 | driver overhead p99 (per run) | bound | result | latency p50 | latency p99 (per run) | publisher lateness p99 | flood CPU (polling) | server CPU | other load per run | lossless | label |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for s in "${shape_list[@]}"; do
        for r in "${want_relays[@]}"; do selftest_row "$s" "$r"; done
    done
    echo
    echo "Bound: $pass held, $fail did not."
    echo
    echo "Driver overhead (\`driver_overhead_us\`): for each latency sample, from the kernel's receive"
    echo "timestamp of the read that completed the message (SO_TIMESTAMPNS; on TCP the newest segment"
    echo "the read took) to the moment flood timed the arrival: waking flood's thread, the kernel's"
    echo "receive work of that turn of its loop, the handling of the completions before it. Publisher"
    echo "lateness (\`pub_lag_us\`): intended send time to the moment the message was written into its"
    echo "send buffer; it is inside every latency sample. Flood CPU in parentheses: the part spent"
    echo "polling the ring (\`--spin-us\`). A run with other load (more than 0.2 of a core besides the"
    echo "relay and flood) measures the machine, not flood: its FAIL says little."
    echo
    [ ! -e "$out/latency.png" ] || { echo "![latency](latency.png)"; echo; }
    echo "Commands (flood pinned with taskset -c 1; PORT and PID are the server's):"
    echo
    for s in "${shape_list[@]}"; do
        echo "- $s: \`flood --proto line --port PORT --server-pid PID $(shape_args "$s")\`"
    done
    for r in "${want_relays[@]}"; do echo "- $r: \`$(server_cmd "$r" "")\`"; done
}
