# shellcheck shell=bash
# tools/bench: wait for a quiet machine before each run. Sourced by tools/bench.
#
# "Quiet" means the processes other than the benchmark used less than 5 % of a core over 2 s.
# The machine's busy time comes from /proc/stat; the benchmark's own is this script's
# /proc/PID/stat, whose cutime/cstime hold every child it has reaped (servers, flood, awk,
# sleep), so their CPU is not counted as other work. steal and iowait are not process CPU.

quiet_window=2        # seconds per sample
quiet_limit=0.05      # cores used by others
hz=$(getconf CLK_TCK)

machine_busy_ticks() { # user + nice + system + irq + softirq, all CPUs
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}
own_ticks() { # utime + stime + cutime + cstime of this script (fields 14-17 of /proc/PID/stat)
    sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $12 + $13 + $14 + $15 }'
}
other_cores() { # cores the other processes used over one window
    local m0 o0 m1 o1
    m0=$(machine_busy_ticks); o0=$(own_ticks)
    sleep "$quiet_window"
    m1=$(machine_busy_ticks); o1=$(own_ticks)
    awk -v m="$((m1 - m0))" -v o="$((o1 - o0))" -v hz="$hz" -v w="$quiet_window" \
        'BEGIN { x = (m - o) / hz / w; printf "%.3f\n", x < 0 ? 0 : x }'
}

# Sets run_noisy=1 when the machine did not become quiet within --quiet-wait seconds.
wait_quiet() {
    local start busy told=0
    start=$(date +%s)
    run_noisy=0
    while :; do
        busy=$(other_cores)
        awk -v b="$busy" -v l="$quiet_limit" 'BEGIN { exit !(b < l) }' && return 0
        if [ $(($(date +%s) - start)) -ge "$quiet_wait" ]; then
            say "other processes still use $busy of a core after ${quiet_wait}s: running anyway, labelled noisy"
            run_noisy=1
            return 0
        fi
        # Say so at the start and then every 10 s or so, not every window.
        if [ $(($(date +%s) - told)) -ge 10 ]; then
            say "waiting for a quiet machine: other processes use $busy of a core (limit $quiet_limit)"
            told=$(date +%s)
        fi
    done
}
