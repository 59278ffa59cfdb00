# Shared by bench/*.sh: peers, ports, timing, the threadsd build. Sourced, not run.
# shellcheck shell=bash

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$bench_dir")

# Processes and directories to clean up on exit, in reverse order of creation.
cleanup_cmds=()
on_exit() {
    local i
    for ((i = ${#cleanup_cmds[@]} - 1; i >= 0; i--)); do
        eval "${cleanup_cmds[i]}" >/dev/null 2>&1 || true
    done
}
trap on_exit EXIT

die() {
    echo "bench: $*" >&2
    exit 1
}

# need PROGRAM PACKAGE: fails naming the Debian package that provides PROGRAM.
need() {
    command -v "$1" >/dev/null 2>&1 || [[ -x $1 ]] \
        || die "\`$1\` not found: run tests/peers/install.sh or apt-get install $2"
}

install_peers() {
    bash "$repo_dir/tests/peers/install.sh" || die "tests/peers/install.sh failed"
    need /usr/sbin/smtp-sink postfix
    need /usr/sbin/smtp-source postfix
    need dovecot dovecot-core
    need doveadm dovecot-core
    need /usr/bin/time time
    need curl curl
    need python3 python3
}

# A work directory on the same disk for every store, enterable by the peers' users.
make_workdir() {
    work=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/threadsd-bench.XXXXXX")
    chmod 755 "$work"
    if [[ -n ${BENCH_KEEP:-} ]]; then
        echo "bench: keeping $work" >&2
    else
        cleanup_cmds+=("rm -rf '$work'")
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_port PORT [SECONDS]: true once something accepts on 127.0.0.1:PORT.
wait_port() {
    local port=$1 tries=$((${2:-15} * 10))
    while ((tries-- > 0)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

now() {
    date +%s.%N
}

# rate COUNT START END: messages per second.
rate() {
    awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'
}

# ratio A B [DIGITS]: A/B, or "-" when either is missing.
ratio() {
    awk -v a="$1" -v b="$2" -v d="${3:-2}" \
        'BEGIN { if (a + 0 == 0 || b + 0 == 0) print "-"; else printf "%.*f", d, a / b }'
}

# Builds threadsd in release mode; sets threadsd_bin.
build_threadsd() {
    if [[ -z ${BENCH_NO_BUILD:-} ]]; then
        echo "bench: cargo build --release" >&2
        (cd "$repo_dir" && cargo build --release --quiet --bin threadsd) \
            || die "cargo build --release failed"
    fi
    # cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in.
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$repo_dir/$target
    threadsd_bin=$target/release/threadsd
    [[ -x $threadsd_bin ]] || die "no binary at $threadsd_bin"
}

# start_dovecot DIR LMTP_PORT IMAP_PORT: a private Dovecot with its Maildirs in DIR/mail,
# every LMTP recipient accepted. Sets dovecot_conf.
start_dovecot() {
    local dir=$1 lmtp=$2 imap=$3
    mkdir -p "$dir/run" "$dir/state" "$dir/mail"
    chmod 755 "$dir"
    chown nobody:nogroup "$dir/mail"
    : >"$dir/users"
    dovecot_conf=$dir/dovecot.conf
    cat >"$dovecot_conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
mail_location = maildir:$dir/mail/%u/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$dir/mail/%u allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
CONF
    dovecot -c "$dovecot_conf" </dev/null >"$dir/start.log" 2>&1 \
        || die "dovecot did not start: $(cat "$dir/start.log" "$dir/dovecot.log" 2>/dev/null)"
    cleanup_cmds+=("doveadm -c '$dovecot_conf' stop")
    wait_port "$lmtp" || die "dovecot LMTP did not listen on $lmtp"
}

# start_threadsd DIR: writes DIR/threadsd.toml with the ports in threadsd_smtp,
# threadsd_lmtp, threadsd_metrics and starts `threadsd serve`, with sender checks as
# BENCH_VERIFY_AUTH says (default false). Sets threadsd_pid and threadsd_conf; returns
# non-zero (with the reason on stderr) when the daemon does not become ready.
start_threadsd() {
    local dir=$1
    mkdir -p "$dir"
    threadsd_smtp=$(free_port)
    threadsd_lmtp=$(free_port)
    threadsd_metrics=$(free_port)
    threadsd_conf=$dir/threadsd.toml
    cat >"$threadsd_conf" <<CONF
[store]
path = "$dir/data"

[admin]
socket = "$dir/admin.sock"

[metrics]
enabled = true
listen = "127.0.0.1:$threadsd_metrics"

[log]
level = "warn"

[smtp]
listen = ["127.0.0.1:$threadsd_smtp"]
hostname = "threadsd.bench"
verify_auth = ${BENCH_VERIFY_AUTH:-false}

[lmtp]
listen = ["127.0.0.1:$threadsd_lmtp"]
CONF
    "$threadsd_bin" serve --config "$threadsd_conf" </dev/null >"$dir/threadsd.log" 2>&1 &
    threadsd_pid=$!
    cleanup_cmds+=("stop_pid $threadsd_pid")

    local tries=300 status
    while ((tries-- > 0)); do
        if ! kill -0 "$threadsd_pid" 2>/dev/null; then
            wait "$threadsd_pid" && status=0 || status=$?
            echo "bench: threadsd serve exited with status $status before it was ready;" \
                "this build has no working \`threadsd serve\` yet (log: $dir/threadsd.log, kept with BENCH_KEEP=1)" >&2
            tail -n 20 "$dir/threadsd.log" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$threadsd_smtp") 2>/dev/null \
            && "$threadsd_bin" stats --json --config "$threadsd_conf" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench: threadsd serve not ready after 30 s (log: $dir/threadsd.log)" >&2
    return 1
}

# stop_pid PID: SIGTERM, up to 30 s for the exit, then SIGKILL.
stop_pid() {
    local pid=$1 tries=300
    kill -TERM "$pid" 2>/dev/null || return 0
    while ((tries-- > 0)) && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# peak_rss_kib PID: VmHWM of a running process.
peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}
