#!/usr/bin/env bash
# Bulk import: `threadsd import` of a generated Maildir and mbox into a fresh store (no
# daemon), against Dovecot's `doveadm import` of the same messages into its own Maildir.
#
# Prints messages/s, peak RSS (GNU time) and bytes on disk against raw bytes.
# Environment: BENCH_IMPORT_MESSAGES (2000), BENCH_SIZES ("4096 102400"), BENCH_TMPDIR,
# BENCH_KEEP, BENCH_NO_BUILD.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

count=${BENCH_IMPORT_MESSAGES:-2000}
sizes=${BENCH_SIZES:-4096 102400}

install_peers
build_threadsd
make_workdir
start_dovecot "$work/dovecot" "$(free_port)" "$(free_port)"

# timed OUT_FILE COMMAND...: runs COMMAND under GNU time; OUT_FILE gets "seconds max_rss_kib"
# (seconds from the clock: GNU time's %e has only centisecond resolution).
timed() {
    local out=$1 start end rc=0
    shift
    start=$(now)
    /usr/bin/time -f '%M' -o "$out.rss" "$@" || rc=$?
    end=$(now)
    echo "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }') $(tail -n 1 "$out.rss")" >"$out"
    return "$rc"
}

mib() {
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

# threadsd_import NAME SOURCE: imports SOURCE into a fresh store; prints
# "rate rss_mib store_bytes", or "- - -" with the reason on stderr.
threadsd_import() {
    local name=$1 source=$2 dir=$work/threadsd-$1
    mkdir -p "$dir"
    cat >"$dir/threadsd.toml" <<CONF
[store]
path = "$dir/data"

[admin]
socket = "$dir/admin.sock"

[log]
level = "warn"
CONF
    local rc=0
    timed "$dir/time" "$threadsd_bin" import --config "$dir/threadsd.toml" --project Bench \
        "$source" >"$dir/import.log" 2>&1 || rc=$?
    if ((rc != 0)) || [[ ! -d $dir/data ]]; then
        echo "bench: threadsd import of $name failed (status $rc, store created:" \
            "$([[ -d $dir/data ]] && echo yes || echo no)); this build has no working" \
            "\`threadsd import\` yet? $(tail -n 5 "$dir/import.log")" >&2
        echo "- - -"
        return 1
    fi
    local stored
    stored=$("$threadsd_bin" message list --json --project Bench --config "$dir/threadsd.toml" \
        | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))') || stored=?
    if [[ $stored != "$count" ]]; then
        echo "bench: threadsd import of $name stored $stored of $count messages" >&2
    fi
    read -r seconds rss <"$dir/time"
    echo "$(rate "$count" 0 "$seconds") $(mib "$rss") $(du -sb "$dir/data" | cut -f1)"
}

# doveadm_import NAME LOCATION: imports a source mail location into a fresh Dovecot user;
# prints "rate rss_mib maildir_bytes".
doveadm_import() {
    local name=$1 location=$2 user=$1@bench.test
    local control=$work/dovecot-control/$name
    mkdir -p "$control"
    chown nobody:nogroup "$control"
    timed "$work/doveadm-$name.time" doveadm -c "$dovecot_conf" import -u "$user" \
        -s "$location:INDEX=MEMORY:CONTROL=$control" "" all \
        >"$work/doveadm-$name.log" 2>&1 \
        || die "doveadm import of $name failed: $(tail -n 5 "$work/doveadm-$name.log")"
    local maildir=$work/dovecot/mail/$user/Maildir stored
    stored=$(find "$maildir/cur" "$maildir/new" -type f | wc -l)
    [[ $stored == "$count" ]] || echo "bench: doveadm import of $name stored $stored" >&2
    read -r seconds rss <"$work/doveadm-$name.time"
    echo "$(rate "$count" 0 "$seconds") $(mib "$rss") $(du -sb "$maildir" | cut -f1)"
}

threadsd_ok=1
rows=()
for size in $sizes; do
    src=$work/source-$size
    mkdir -p "$src/mbox-root"
    python3 "$bench_dir/genmail.py" --count "$count" --size "$size" --seed "$size" \
        --maildir "$src/Maildir" --mbox "$src/messages.mbox"
    # Dovecot reads the sources as `nobody`; its own copy of the mbox, since Dovecot may
    # write its status headers into an mbox it reads.
    cp "$src/messages.mbox" "$src/mbox-root/inbox"
    chown -R nobody:nogroup "$src/mbox-root"
    chmod -R a+rX "$src"
    raw_maildir=$(find "$src/Maildir/cur" -type f -printf '%s\n' \
        | awk '{ s += $1 } END { print s }')
    raw_mbox=$(stat -c %s "$src/messages.mbox")

    for format in maildir mbox; do
        name=${format}${size}
        if [[ $format == maildir ]]; then
            source=$src/Maildir raw=$raw_maildir location=maildir:$src/Maildir
        else
            source=$src/messages.mbox raw=$raw_mbox
            location=mbox:$src/mbox-root:INBOX=$src/mbox-root/inbox
        fi
        read -r t_rate t_rss t_disk < <(threadsd_import "$name" "$source" || true)
        [[ $t_rate == - ]] && threadsd_ok=0
        read -r d_rate d_rss d_disk < <(doveadm_import "$name" "$location")
        rows+=("$(printf '%-7s %-7s | %8s %8s %9s | %8s %8s %9s | %6s' \
            "$((size / 1024))KiB" "$format" "$t_rate" "$t_rss" "$(ratio "$t_disk" "$raw")" \
            "$d_rate" "$d_rss" "$(ratio "$d_disk" "$raw")" "$(ratio "$t_rate" "$d_rate")")")
    done
done

printf '\nimport of %s messages per row; disk/raw = bytes on disk (du -sb) / raw message bytes\n' \
    "$count"
printf '%-7s %-7s | %8s %8s %9s | %8s %8s %9s | %6s\n' size format "threadsd" "RSS MiB" \
    "disk/raw" "doveadm" "RSS MiB" "disk/raw" "ratio"
printf '%-7s %-7s | %8s %8s %9s | %8s %8s %9s | %6s\n' "" "" "msg/s" "" "" "msg/s" "" "" \
    "t/d"
printf '%s\n' "${rows[@]}"

if ((!threadsd_ok)); then
    die "threadsd's half did not run: \`$threadsd_bin import\` failed (see above)"
fi
