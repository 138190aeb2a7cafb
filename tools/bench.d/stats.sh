# shellcheck shell=bash
# tools/bench: medians, ratios and formatting over results.jsonl (the records marked "used").
# Sourced by tools/bench.

results() { echo "$out/results.jsonl"; }

median() { # values on stdin, one a line; prints the median or "-"
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
values() { # shape relay jq-expression over .figures: one value per used run
    [ -s "$(results)" ] || return 0
    jq -r --arg s "$1" --arg r "$2" "select(.used and .shape == \$s and .relay == \$r) | .figures | ($3) // empty" "$(results)"
}
med() { values "$1" "$2" "$3" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
fmt() { # number kind
    awk -v v="$1" -v k="$2" 'BEGIN {
        if (v == "-") { print "-"; exit }
        if (k == "rate") { if (v >= 1e6) printf "%.2fM\n", v / 1e6; else printf "%.0fk\n", v / 1e3 }
        else if (k == "us") printf "%.0f us\n", v
        else if (k == "cpu") printf "%.2f\n", v
        else if (k == "bytes") printf "%.0f B\n", v
        else print v }'
}

bad_run='(.lost + .duplicated + .reordered + .corrupt + .errors) != 0'
trouble() { # shape relay: "ok", "k/n lossy" or "no run"
    local n bad
    n=$(values "$1" "$2" '1' | wc -l)
    bad=$(values "$1" "$2" "select($bad_run) | 1" | wc -l)
    [ "$n" -eq 0 ] && echo "no run" && return
    [ "$bad" -eq 0 ] && echo "ok" || echo "$bad/$n lossy"
}
lossless_all() { [ "$(trouble "$1" "$2")" = ok ]; }

# Labels for a shape's row: repetitions still spread too much after the reruns; runs that
# started on a machine that never became quiet; runs with other load after 3 attempts.
shape_labels() { # shape: "" or "noisy (spread N% redis), ..."
    [ -s "$(results)" ] || return 0
    jq -r -s --arg s "$1" '
        [.[] | select(.used and .shape == $s)] as $u
        | ([$u[] | select(.labels | any(startswith("noisy (spread"))) | {relay, spread_pct}]
           | unique | map("\(.relay) \(.spread_pct)%")) as $spread
        | ([$u[] | select(.labels | any(. == "noisy"))] | length) as $machine
        | ([$u[] | select(.labels | any(startswith("other load")))] | length) as $other
        | [ (if ($spread | length) > 0 then "noisy (spread \($spread | join(", ")))" else empty end),
            (if $machine > 0 then "noisy: \($machine) run(s) on a busy machine" else empty end),
            (if $other > 0 then "\($other) run(s) with other load > 0.2 core" else empty end) ]
        | join("; ")' "$(results)"
}
