#!/bin/sh
# Install every Debian 12 package the test suite needs, as root, idempotently.
# Does nothing (not even apt-get) when all are present; never starts a daemon:
# a temporary policy-rc.d forbids the packages' init scripts to run.
set -eu

PACKAGES="
slurmctld slurmd slurm-client slurm-wlm-jwt-plugin munge slurmrestd
openssh-server openssh-client pamtester
python3-jwt python3-cryptography python3-venv python3-pip python3-pypamtest
libpam-wrapper libpam0g-dev shellcheck
zsh ksh tcsh dash fish
strace valgrind gcc libc6-dev make curl systemd procps iproute2 lua-posix tmux
python3-pam clang libclang-rt-14-dev man-db rpm
prometheus python3-yaml
python3-prometheus-client
rpmlint selinux-policy-dev checkpolicy semodule-utils debootstrap
build-essential debhelper dpkg-dev lintian
cron sudo nginx-light fcgiwrap
slurmdbd slurm-wlm-mysql-plugin mariadb-server
"
POLICY=/usr/sbin/policy-rc.d

die() {
    echo "setup-deps: $*" >&2
    exit 1
}

# Print the packages of $PACKAGES that dpkg does not report as installed
# (one dpkg-query for all of them: this is the fast path of every test run).
missing_packages() {
    # shellcheck disable=SC2086
    installed=" $(dpkg-query -W -f='${Package}=${db:Status-Status} ' $PACKAGES 2>/dev/null || true)"
    for pkg in $PACKAGES; do
        case $installed in
            *" $pkg=installed "*) ;;
            *) printf '%s\n' "$pkg" ;;
        esac
    done
}

# Print those of the packages named that apt has no installation candidate for.
without_candidate() {
    for pkg in "$@"; do
        candidate=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
        case $candidate in
            '' | '(none)') printf '%s ' "$pkg" ;;
        esac
    done
}

# Forbid invoke-rc.d to start daemons (exit 101) unless a policy already exists.
block_daemons() {
    if [ -e "$POLICY" ]; then
        return 0
    fi
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
    trap 'rm -f "$POLICY"; exit 1' HUP INT TERM
}

# apt-get install, showing its output only when it fails.
install_quietly() {
    log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Use-Pty=0 "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "apt-get install failed for: $*"
    fi
    rm -f "$log"
}

main() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages); run: sudo $0"
    # Word splitting on purpose: one package name per word.
    # shellcheck disable=SC2046
    set -- $(missing_packages)
    if [ "$#" -eq 0 ]; then
        return 0
    fi
    echo "setup-deps: installing $*" >&2
    if [ -n "$(without_candidate "$@")" ]; then
        apt-get update -qq || die "apt-get update failed"
    fi
    unknown=$(without_candidate "$@")
    [ -z "$unknown" ] || die "not in the configured Debian archive: $unknown"
    block_daemons
    install_quietly "$@"
    # shellcheck disable=SC2046
    set -- $(missing_packages)
    [ "$#" -eq 0 ] || die "still missing after install: $*"
}

main "$@"
