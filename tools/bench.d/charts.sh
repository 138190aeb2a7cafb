# shellcheck shell=bash
# tools/bench: PNG charts with gnuplot from results.jsonl's medians. Sourced by tools/bench.
#
#   deliveries.png  deliveries/s per full-speed shape and relay (bars, log scale)
#   latency.png     p50 / p99 / p999 per fixed rate and relay (one panel per rate, log scale)
#   memory.png      bytes per idle connection per relay: server RSS, kernel slab
# The data files go to raw/ (not tracked); a chart with no data is not drawn.

chart_relays() { local r; for r in ringcast baseline redis nats; do has_relay "$r" && echo "$r"; done; }

shapes_of_kind() {
    local s
    for s in "${shape_list[@]}"; do
        if [ "$(shape_kind "$s")" = "$1" ]; then echo "$s"; fi
    done
}

# One bar series per relay, in tab-separated columns: "label<TAB>value..." ("-" when missing).
write_bar_data() { # file title-of-first-column, then lines "label<TAB>shape<TAB>expr" on stdin
    local file=$1 label shape expr line r
    printf '# %s' "$2" >"$file"
    for r in "${relays_charted[@]}"; do printf '\t%s' "$r" >>"$file"; done
    echo >>"$file"
    while IFS=$'\t' read -r label shape expr; do
        line=$label
        for r in "${relays_charted[@]}"; do line+=$'\t'$(med "$shape" "$r" "$expr"); done
        echo "$line" >>"$file"
    done
}

plot_columns() { # data file: the plot clause, one series per relay
    local i=2 r u cmd="" file=$1
    for r in "${relays_charted[@]}"; do
        u=$i; [ $i = 2 ] && u="$i:xtic(1)" # the first series labels the clusters
        cmd+="${cmd:+, }'$file' using $u title '$(relay_title "$r")' lc rgb '$(relay_colour "$r")'"
        i=$((i + 1))
    done
    echo "$cmd"
}
relay_colour() { case $1 in ringcast) echo '#1f77b4' ;; baseline) echo '#7f7f7f' ;; redis) echo '#d62728' ;; nats) echo '#2ca02c' ;; esac; }

gnuplot_common() {
    cat <<'EOF'
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set grid ytics
set key top right
EOF
}

draw_deliveries() {
    local full dat="$out/raw/deliveries.dat" s
    mapfile -t full < <(shapes_of_kind full)
    [ ${#full[@]} -gt 0 ] || return 0
    for s in "${full[@]}"; do printf '%s\t%s\t%s\n' "$(shape_label "$s")" "$s" '.deliveries_per_s'; done |
        write_bar_data "$dat" shape
    gnuplot <<EOF || say "gnuplot failed: no deliveries.png"
set terminal pngcairo size $((600 + 160 * ${#full[@]})),560 font "sans,11" noenhanced
set output "$out/deliveries.png"
$(gnuplot_common)
set logscale y
set format y "%.0s%c"
set ylabel "deliveries/s (median of the repetitions; log scale)"
set title "tools/bench $suite: deliveries/s per shape and relay\n$(date -u +%Y-%m-%d), read mode $(chart_read_mode full)"
set xtics rotate by -20
plot $(plot_columns "$dat")
EOF
}

draw_latency() {
    local rate dat s n=0 panels=""
    mapfile -t rate < <(shapes_of_kind rate)
    [ ${#rate[@]} -gt 0 ] || return 0
    for s in "${rate[@]}"; do
        dat="$out/raw/latency-$s.dat"
        printf 'p50\t%s\t.latency_us.p50\np99\t%s\t.latency_us.p99\np999\t%s\t.latency_us.p999\n' "$s" "$s" "$s" |
            write_bar_data "$dat" percentile
        panels+="set title \"$(shape_label "$s")\""$'\n'"plot $(plot_columns "$dat")"$'\n'
        n=$((n + 1))
    done
    gnuplot <<EOF || say "gnuplot failed: no latency.png"
set terminal pngcairo size $((300 + 460 * n)),540 font "sans,11" noenhanced
set output "$out/latency.png"
$(gnuplot_common)
set logscale y
set format y "%.0s%c"
set ylabel "latency, us (median of the repetitions; log scale)"
set multiplot layout 1,$n title "tools/bench $suite: latency percentiles per fixed rate and relay\n$(date -u +%Y-%m-%d), read mode $(chart_read_mode rate)"
$panels
unset multiplot
EOF
}

draw_memory() {
    local idle s dat="$out/raw/memory.dat" r line
    mapfile -t idle < <(shapes_of_kind idle)
    [ ${#idle[@]} -gt 0 ] || return 0
    s=${idle[0]}
    # Here the clusters are the relays and the bars the two figures.
    printf '# relay\tserver RSS\tkernel slab\n' >"$dat"
    for r in "${relays_charted[@]}"; do
        line="$(relay_title "$r")"$'\t'$(med "$s" "$r" "$idle_rss_per_conn")$'\t'$(med "$s" "$r" "$idle_slab_per_conn")
        echo "$line" >>"$dat"
    done
    gnuplot <<EOF || say "gnuplot failed: no memory.png"
set terminal pngcairo size 900,520 font "sans,11" noenhanced
set output "$out/memory.png"
$(gnuplot_common)
set ylabel "bytes per idle connection (median)"
set yrange [0:*]
set title "tools/bench $suite: memory per idle connection\n$(shape_label "$s"), $(date -u +%Y-%m-%d)"
plot '$dat' using 2:xtic(1) title 'server RSS added' lc rgb '#1f77b4', '' using 3 title 'kernel slab added (both ends of the connection)' lc rgb '#ff7f0e'
EOF
}

# RSS and slab added per idle connection, as jq expressions over a record's figures.
idle_rss_per_conn='((.server_rss_kb.end - .server_rss_kb.start) * 1024 / .config.subs)'
idle_slab_per_conn='(if .kernel.slab_kb then .kernel.slab_kb * 1024 / .kernel.conns else empty end)'

chart_read_mode() { # kind: the read mode(s) of the charted shapes
    local s; for s in "${shape_list[@]}"; do [ "$(shape_kind "$s")" = "$1" ] && shape_read_mode "$s"; done | sort -u | paste -sd/ -
}

draw_charts() {
    [ "$have_gnuplot" = 1 ] || return 0
    [ -s "$(results)" ] || return 0
    mapfile -t relays_charted < <(chart_relays)
    draw_deliveries
    draw_latency
    draw_memory
}
