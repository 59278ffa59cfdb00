#!/usr/bin/env bash
# Installs the Debian packages of the real peers that threadsd's integration tests and
# benchmarks talk to (tests/peers, bench/). Idempotent: installs only what is missing, runs
# `apt-get update` at most once, and exits non-zero naming the packages apt could not install.
set -euo pipefail

# program-or-path -> package that provides it on Debian 12.
checks=(
    "postfix:postfix"
    "/usr/sbin/smtp-sink:postfix"
    "/usr/sbin/smtp-source:postfix"
    "dovecot:dovecot-core"
    "doveadm:dovecot-core"
    "/usr/lib/dovecot/imap:dovecot-imapd"
    "/usr/lib/dovecot/lmtp:dovecot-lmtpd"
    "swaks:swaks"
    "curl:curl"
    "promtool:prometheus"
    "/usr/bin/time:time"
    "openssl:openssl"
    "kill:procps"
    "python3:python3"
)
# Perl modules swaks needs for STARTTLS and implicit TLS; checked as packages.
packages_only=(libnet-ssleay-perl libio-socket-ssl-perl)

missing=()
add_missing() {
    local pkg=$1 seen
    for seen in "${missing[@]+"${missing[@]}"}"; do
        [[ $seen == "$pkg" ]] && return 0
    done
    missing+=("$pkg")
}

for entry in "${checks[@]}"; do
    program=${entry%%:*}
    package=${entry#*:}
    if [[ $program == /* ]]; then
        [[ -x $program ]] || add_missing "$package"
    else
        command -v "$program" >/dev/null 2>&1 || [[ -x /usr/sbin/$program ]] \
            || add_missing "$package"
    fi
done
for package in "${packages_only[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || add_missing "$package"
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: missing packages ${missing[*]}, and installing them needs root" >&2
    exit 1
fi

echo "install.sh: installing ${missing[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT

export DEBIAN_FRONTEND=noninteractive
# Without the preseed, postfix's postinst asks which kind of mail server this is.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    echo "install.sh: apt-get update failed" >&2
    exit 1
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install.sh: apt-get install ${missing[*]} failed" >&2
    exit 1
fi

# Apt starts no services here, but a package that did would hold the default ports.
for entry in "${checks[@]}"; do
    program=${entry%%:*}
    if [[ $program == /* ]]; then
        [[ -x $program ]] && continue
    else
        command -v "$program" >/dev/null 2>&1 && continue
        [[ -x /usr/sbin/$program ]] && continue
    fi
    echo "install.sh: $program still missing after installing ${entry#*:}" >&2
    exit 1
done
echo "install.sh: done" >&2
