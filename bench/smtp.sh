#!/usr/bin/env bash
# SMTP and LMTP ingest: threadsd against its peers in one run, on loopback.
#
#   SMTP: smtp-sink (accepts and discards: the machine's ceiling) vs threadsd's SMTP port
#   LMTP: Dovecot LMTP (a durable store) vs threadsd's LMTP port
#
# The same smtp-source load goes to each; the figures that matter are the ratios.
# Environment: BENCH_MESSAGES (2000), BENCH_SIZES ("4096 102400"), BENCH_SESSIONS
# ("1 10 50"), BENCH_LATENCY_MESSAGES (2000), BENCH_VERIFY_AUTH (false), BENCH_REPEAT (1),
# BENCH_TMPDIR, BENCH_KEEP, BENCH_NO_BUILD.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

messages=${BENCH_MESSAGES:-2000}
sizes=${BENCH_SIZES:-4096 102400}
sessions_list=${BENCH_SESSIONS:-1 10 50}
latency_messages=${BENCH_LATENCY_MESSAGES:-2000}
repeat=${BENCH_REPEAT:-1}

install_peers
build_threadsd
make_workdir

# The peers.
sink_port=$(free_port)
/usr/sbin/smtp-sink -u nobody 127.0.0.1:"$sink_port" 1000 </dev/null >/dev/null 2>&1 &
cleanup_cmds+=("kill $!")
wait_port "$sink_port" || die "smtp-sink did not listen"

dovecot_lmtp=$(free_port)
start_dovecot "$work/dovecot" "$dovecot_lmtp" "$(free_port)"

threadsd_ok=1
start_threadsd "$work/threadsd" || threadsd_ok=0

# load PORT SESSIONS SIZE [-L]: pushes $messages messages with smtp-source and prints the
# rate, or "ERR" (details on stderr).
load() {
    local port=$1 sessions=$2 size=$3 lmtp=${4:-} start end out
    out=$work/smtp-source.out
    start=$(now)
    # shellcheck disable=SC2086 # $lmtp is empty or the one flag -L
    if ! /usr/sbin/smtp-source $lmtp -d -s "$sessions" -m "$messages" -l "$size" \
        -f bench@corp.test -t archive@bcc.test 127.0.0.1:"$port" >"$out" 2>&1; then
        echo "bench: smtp-source to port $port failed: $(head -c 300 "$out")" >&2
        echo ERR
        return
    fi
    end=$(now)
    rate "$messages" "$start" "$end"
}

metrics_url=http://127.0.0.1:${threadsd_metrics:-0}/metrics

# metric NAME: an unlabelled sample of threadsd's metrics endpoint; 0 when absent.
metric() {
    curl -fsS "$metrics_url" 2>/dev/null | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}

# stored_messages: the count `threadsd stats` reports.
stored_messages() {
    "$threadsd_bin" stats --json --config "$threadsd_conf" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["messages"])'
}

# threadsd_load PORT SESSIONS SIZE [-L]: `load` against threadsd; prints "rate mean_batch",
# the mean number of submissions per durable commit during the load.
threadsd_load() {
    local n0 s0 rate
    n0=$(metric threadsd_commit_batch_size_count)
    s0=$(metric threadsd_commit_batch_size_sum)
    rate=$(load "$@")
    echo "$rate $(awk -v n0="$n0" -v s0="$s0" -v n1="$(metric threadsd_commit_batch_size_count)" \
        -v s1="$(metric threadsd_commit_batch_size_sum)" \
        'BEGIN { if (n1 > n0) printf "%.1f", (s1 - s0) / (n1 - n0); else print "-" }')"
}

# Every message smtp-source and the latency probe send has a Message-ID of its own, so
# threadsd must end up holding exactly as many as it acknowledged; a shortfall means a
# rate of refusals, not of stored mail.
expected_stored=0 counts_ok=1
peaks=()
check_stored() {
    local stored
    stored=$(stored_messages) || stored=?
    if [[ $stored != "$expected_stored" ]]; then
        echo "bench: threadsd holds $stored messages, $expected_stored were sent" >&2
        counts_ok=0
    fi
}

# median VALUES...: the median of the numeric values; "-" when there are none.
median() {
    printf '%s\n' "$@" | awk '$1 + 0 > 0' | sort -g \
        | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}

printf '\nmessages/s, %s messages per cell (smtp-source -d), median of %s runs interleaved' \
    "$messages" "$repeat"
printf ' across the servers, threadsd verify_auth = %s\n' "${BENCH_VERIFY_AUTH:-false}"
printf '%-7s %5s | %10s %10s %8s | %10s %10s %8s | %11s\n' size sess smtp-sink threadsd \
    "ratio" dovecot threadsd "ratio" "mean batch"
printf '%-7s %5s | %10s %10s %8s | %10s %10s %8s | %11s\n' "" "" "(SMTP)" "(SMTP)" ">=0.6" \
    "(LMTP)" "(LMTP)" ">=8" "SMTP/LMTP"
for size in $sizes; do
    for sessions in $sessions_list; do
        # Other work on the machine comes and goes; running the servers in turn, several
        # times, lets each see the same share of it.
        runs=()
        for ((r = 0; r < repeat; r++)); do
            run="$(load "$sink_port" "$sessions" "$size") $(load "$dovecot_lmtp" "$sessions" "$size" -L)"
            if ((threadsd_ok)); then
                run+=" $(threadsd_load "$threadsd_smtp" "$sessions" "$size")"
                run+=" $(threadsd_load "$threadsd_lmtp" "$sessions" "$size" -L)"
                expected_stored=$((expected_stored + 2 * messages))
            fi
            runs+=("$run")
        done
        col_median() { median $(printf '%s\n' "${runs[@]}" | awk -v c="$1" '{ print $c }'); }
        sink=$(col_median 1) dove=$(col_median 2)
        t_smtp=- t_lmtp=- b_smtp=- b_lmtp=-
        if ((threadsd_ok)); then
            t_smtp=$(col_median 3) b_smtp=$(col_median 4) t_lmtp=$(col_median 5) b_lmtp=$(col_median 6)
            check_stored
        fi
        printf '%-7s %5s | %10s %10s %8s | %10s %10s %8s | %11s\n' "$((size / 1024))KiB" \
            "$sessions" "$sink" "$t_smtp" "$(ratio "$t_smtp" "$sink")" \
            "$dove" "$t_lmtp" "$(ratio "$t_lmtp" "$dove" 1)" "$b_smtp/$b_lmtp"
    done
    # VmHWM only grows: read after each size, it is the peak of that size and the ones
    # before it, so the 4 KiB target is checked on 4 KiB loads alone when they run first.
    if ((threadsd_ok)); then
        peaks+=("$size:$(peak_rss_kib "$threadsd_pid")")
    fi
done

# Acknowledgement latency: measured by bench/smtpclient.py (client side, from writing
# CRLF.CRLF to reading the reply), 10 sessions of 4 KiB messages.
latency() {
    python3 "$bench_dir/smtpclient.py" latency --sessions 10 --size 4096 \
        --messages "$latency_messages" "$@" || true
}
printf '\nack latency, client-measured (smtpclient.py), 10 sessions, 4 KiB, %s messages\n' \
    "$latency_messages"
printf '  %-16s %s\n' smtp-sink "$(latency --port "$sink_port")"
printf '  %-16s %s\n' "dovecot LMTP" "$(latency --port "$dovecot_lmtp" --lmtp)"
if ((threadsd_ok)); then
    curl -fsS "$metrics_url" >"$work/metrics.before" || : >"$work/metrics.before"
    printf '  %-16s %s   target p99 < 25 ms\n' "threadsd SMTP" "$(latency --port "$threadsd_smtp")"
    curl -fsS "$metrics_url" >"$work/metrics.after" || : >"$work/metrics.after"
    printf '  %-16s %s\n' "threadsd LMTP" "$(latency --port "$threadsd_lmtp" --lmtp)"
    from_metric=$(python3 "$bench_dir/smtpclient.py" quantiles \
        --metric threadsd_smtp_ack_duration_seconds --label listener=smtp \
        "$work/metrics.before" "$work/metrics.after")
    printf '  %-16s %s from threadsd_smtp_ack_duration_seconds over the SMTP probe\n' \
        "threadsd metric" "$from_metric"

    expected_stored=$((expected_stored + 2 * latency_messages))
    check_stored
    if [[ ${BENCH_VERIFY_AUTH:-false} == true ]]; then
        printf '\nsender checks after acknowledgement (threadsd_auth_checks_total):\n'
        curl -fsS "$metrics_url" | grep '^threadsd_auth_checks_total' | sed 's/^/  /' || true
    fi

    mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }
    echo
    for peak in "${peaks[@]}"; do
        target=""
        [[ ${peak%%:*} == 4096 ]] && target="   target < 64 MiB (4 KiB loads)"
        printf 'threadsd peak RSS (VmHWM) up to the end of the %s KiB cells: %s MiB%s\n' \
            "$((${peak%%:*} / 1024))" "$(mib "${peak#*:}")" "$target"
    done
    # The kernel's RSS counters are approximate, so a later reading can be a little lower.
    whole=$(printf '%s\n' "$(peak_rss_kib "$threadsd_pid")" "${peaks[@]#*:}" | sort -n | tail -n 1)
    printf 'threadsd peak RSS (VmHWM) over the whole run: %s MiB\n' "$(mib "$whole")"
    store_bytes=$(du -sb "$work/threadsd/data" 2>/dev/null | cut -f1) || store_bytes=?
    printf 'threadsd store: %s bytes on disk (du -sb)\n' "${store_bytes:-?}"
fi
printf 'dovecot maildirs: %s bytes on disk (du -sb)\n' "$(du -sb "$work/dovecot/mail" | cut -f1)"

if ((!threadsd_ok)); then
    die "threadsd's half did not run: \`$threadsd_bin serve\` did not start (see above)"
fi
((counts_ok)) || die "threadsd did not store every message it was sent (see above)"
