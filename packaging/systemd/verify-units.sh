#!/bin/sh
# Verify the shipped systemd units with systemd-analyze, as `make check` does.
# systemd-analyze insists that ExecStart programs exist, so the units are
# checked as installed: into a temporary DESTDIR, with the program paths
# pointed there. Man page references are not checked (--man=no).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s -C "$top" install DESTDIR="$tmp/root" >/dev/null
mkdir -p "$tmp/units"
for unit in "$tmp"/root/usr/lib/systemd/system/slurmjwt-* "$tmp"/root/usr/lib/systemd/system/*.mount \
        "$tmp"/root/usr/lib/systemd/user/slurmjwt-*; do
    sed -e "s|/usr/sbin/slurmjwt-helper|$tmp/root/usr/sbin/slurmjwt-helper|g" \
        -e "s|/usr/bin/slurmjwt-refresh|$tmp/root/usr/bin/slurmjwt-refresh|g" \
        -e "s|/usr/bin/slurmjwt |$tmp/root/usr/bin/slurmjwt |g" \
        -e "s|/usr/lib/slurmjwt/slurmjwt-userdir|$tmp/root/usr/lib/slurmjwt/slurmjwt-userdir|g" \
        "$unit" >"$tmp/units/$(basename "$unit")"
done
# The tokenfile templates are verified as an instance, the account
# "prometheus"; slurmjwt-userdir@.service as its socket's (Accept=yes) template.
for unit in "$tmp"/units/slurmjwt-tokenfile@.*; do
    mv "$unit" "$(printf '%s\n' "$unit" | sed 's/@\./@prometheus./')"
done
systemd-analyze --man=no verify "$tmp"/units/slurmjwt-helper.socket "$tmp"/units/slurmjwt-helper-root.socket \
    "$tmp"/units/slurmjwt-helper.service "$tmp"/units/run-slurmjwt-users.mount
systemd-analyze --man=no verify "$tmp"/units/slurmjwt-userdir.socket \
    "$tmp"/units/slurmjwt-userdir@.service
systemd-analyze --man=no verify "$tmp"/units/slurmjwt-refresh.service "$tmp"/units/slurmjwt-refresh.timer
systemd-analyze --man=no verify "$tmp"/units/slurmjwt-tokenfile@prometheus.service \
    "$tmp"/units/slurmjwt-tokenfile@prometheus.timer
# The helper's hardening may only get tighter: systemd-analyze security's
# exposure level, offline, at most the README's figure (1.4 = 14 here).
if ! score=$(systemd-analyze security --offline=yes --threshold=14 \
        "$tmp"/units/slurmjwt-helper.service 2>&1); then
    printf '%s\n' "$score" | tail -n 1 >&2
    echo "verify-units: slurmjwt-helper.service is less hardened than the README says (1.4)" >&2
    exit 1
fi
# slurmjwt-userdir runs as root: its hardening may not loosen either (1.0).
if ! uscore=$(systemd-analyze security --offline=yes --threshold=10 \
        "$tmp"/units/slurmjwt-userdir@.service 2>&1); then
    printf '%s\n' "$uscore" | tail -n 1 >&2
    echo "verify-units: slurmjwt-userdir@.service is less hardened than the README says (1.0)" >&2
    exit 1
fi
echo "verify-units: all units pass systemd-analyze verify; helper exposure $(printf '%s\n' "$score" | tail -n 1 | sed 's/.*: //')"
