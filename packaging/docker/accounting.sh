#!/bin/sh
# Demo controller's accounting: MariaDB (Debian's mariadb-server, unix socket
# only, no password anywhere) and slurmdbd, which takes the same tokens as
# slurmctld.
#   demo-accounting prepare   at image build: MariaDB's datadir and the
#                             database user slurm (by its uid: unix_socket)
#   demo-accounting start     at container start: mariadbd, slurmdbd.conf,
#                             slurmdbd, then the demo's users' associations
#   demo-accounting restart-slurmdbd [AUTH_ALT_PARAMETERS]
#                             slurmdbd.conf again from slurm.conf (or with
#                             these AuthAltParameters), slurmdbd restarted
#                             (it reads its keys only at start)
# slurmdbd creates its tables in slurm_acct_db itself at its first start.
set -eu
# As mariadb-demo.cnf says.
SOCKET=/run/mysqld/mysqld.sock
DB_LOG=/var/log/mysql/demo.log
DBD_CONF=/etc/slurm/slurmdbd.conf
SLURM_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
DBD_PID=/run/slurmdbd.pid
DB_USER=slurm
DB_NAME=slurm_acct_db
ACCOUNT=demo
USERS=demo,eve,frank,grace
# tests/demo/cluster.py waits for it.
READY=/var/lib/slurm/accounting.ready
# Polls give up after this many tries, 0.1 s apart.
TRIES=600

poll() {  # poll WHAT COMMAND...: run COMMAND until it succeeds
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -ge "$TRIES" ]; then
            echo "demo-accounting: no $what after $((TRIES / 10)) s" >&2
            return 1
        fi
        sleep 0.1
    done
}

start_mariadb() {
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    rm -f /run/mysqld/mysqld.pid "$SOCKET"
    mariadbd --user=mysql >> "$DB_LOG" 2>&1 &
}

wait_mariadb() {
    poll "MariaDB answering" mariadb-admin --socket="$SOCKET" ping \
        || { tail -n 20 "$DB_LOG" >&2; exit 1; }
}

prepare() {
    install -d -o mysql -g mysql -m 0750 /var/log/mysql
    if [ ! -d /var/lib/mysql/mysql ]; then
        mariadb-install-db --user=mysql --auth-root-authentication-method=socket \
            --datadir=/var/lib/mysql --skip-test-db > /dev/null
    fi
    start_mariadb
    wait_mariadb
    # The database too, before slurmdbd's first start: slurmdbd otherwise
    # connects, fails (no such database), creates it and connects again on
    # the same handle, which MariaDB Connector/C 3.4.10 (trixie's and sid's
    # libmariadb3 11.8.9) leaves unable to read any result set: `5027 Number
    # of columns in result (=1) set execeeds maxmimum allowed number of
    # columns (=0)`, then `fatal: _check_mysql_concat_is_sane`. slurmdbd
    # still makes its tables itself.
    mariadb --socket="$SOCKET" --execute \
        "CREATE DATABASE IF NOT EXISTS $DB_NAME;
         CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED VIA unix_socket;
         GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';"
    mariadb-admin --socket="$SOCKET" shutdown
}

write_slurmdbd_conf() {  # write_slurmdbd_conf [AUTH_ALT_PARAMETERS]
    # By default the same AuthAltParameters as slurmctld's (key file or
    # JWKS): a token slurmctld takes, slurmdbd takes.
    alt=${1:-$(sed -n 's/^AuthAltParameters=//p' "$SLURM_CONF" | tail -n 1)}
    # And slurmctld's AuthType (auth/munge, or auth/slurm with slurm.key from
    # 23.11): slurmctld and the commands reach slurmdbd with it.
    auth=$(sed -n 's/^AuthType=//p' "$SLURM_CONF" | tail -n 1)
    umask 077
    cat > "$DBD_CONF" <<EOF
# Written by demo-accounting from $SLURM_CONF at slurmdbd's start.
# "localhost" spares slurmdbd's check that DbdHost is this host's name.
DbdHost=localhost
SlurmUser=slurm
AuthType=${auth:-auth/munge}
AuthAltTypes=auth/jwt
AuthAltParameters=$alt
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StorageLoc=$DB_NAME
PidFile=$DBD_PID
LogFile=/var/log/slurm/slurmdbd.log
EOF
    chown slurm:slurm "$DBD_CONF"
    chmod 0600 "$DBD_CONF"
}

start_slurmdbd() {  # start_slurmdbd [AUTH_ALT_PARAMETERS]
    write_slurmdbd_conf "${1:-}"
    rm -f "$DBD_PID"
    # Under auth/slurm slurmdbd serves a sack socket in /run/slurmdbd, which
    # it cannot make once it runs as SlurmUser (slurmdbd.service has
    # RuntimeDirectory=slurmdbd): `fatal: _prepare_run_dir: failed to create`.
    install -d -o slurm -g slurm -m 0755 /run/slurmdbd
    # libmariadb takes the socket from MYSQL_UNIX_PORT (slurmdbd.conf has no
    # setting for it); slurmdbd daemonizes itself and drops to SlurmUser.
    MYSQL_UNIX_PORT=$SOCKET slurmdbd
    poll "slurmdbd answering sacctmgr" sacctmgr --noheader show cluster
}

associations() {
    # Once per container: a restarted one keeps its database.
    [ -e "$READY" ] && return 0
    sacctmgr --immediate add cluster demo >/dev/null
    sacctmgr --immediate add account "$ACCOUNT" cluster=demo >/dev/null
    sacctmgr --immediate add user "$USERS" account="$ACCOUNT" cluster=demo >/dev/null
    touch "$READY"
}

start() {
    start_mariadb
    wait_mariadb
    start_slurmdbd
    associations
}

restart_slurmdbd() {  # restart_slurmdbd [AUTH_ALT_PARAMETERS]
    if [ -e "$DBD_PID" ]; then
        pid=$(cat "$DBD_PID")
        kill "$pid" 2>/dev/null || true
        poll "slurmdbd stopping" sh -c "! kill -0 $pid"
    fi
    start_slurmdbd "${1:-}"
}

case "${1:-}" in
    prepare) prepare ;;
    start) start ;;
    restart-slurmdbd) restart_slurmdbd "${2:-}" ;;
    *) echo "usage: demo-accounting prepare|start|restart-slurmdbd [AUTH_ALT_PARAMETERS]" >&2; exit 2 ;;
esac
