#!/bin/sh
# Builds a real pgBackRest repository for the tests: a PostgreSQL cluster archiving with
# `pgbackrest archive-push` into an encrypted repo (aes-256-cbc) under $1, its own
# pgbackrest.conf, lock/log/spool paths under $1; full, diff and incr backups with writes
# between them, then a known target (a time, an LSN, a restore point) with rows before and
# after it. Everything runs as postgres (pgBackRest must not restore as root). Prints the
# facts the tests read as `key=value` lines on stdout.
#   repo.sh DIR PORT PG_BIN
set -eu
D=$1 PORT=$2 BIN=$3
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$D/repo" "$D/log" "$D/lock" "$D/spool" "$D/socket"
CONF=$D/pgbackrest.conf
cat > "$CONF" <<CONF
[global]
repo1-path=$D/repo
repo1-retention-full=2
repo1-retention-diff=6
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=test-cipher-pass-never-printed-5b1f
log-path=$D/log
lock-path=$D/lock
spool-path=$D/spool
log-level-console=warn
log-level-file=info
start-fast=y
compress-type=lz4
archive-async=n

[main]
pg1-path=$D/data
pg1-port=$PORT
pg1-socket-path=$D/socket
CONF
chmod 640 "$CONF"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$D"; fi
as_pg "$BIN/initdb" -D "$D/data" -U postgres -A trust --data-checksums -N >/dev/null
cat >> "$D/data/postgresql.conf" <<PGCONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D/socket'
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$CONF --stanza=main archive-push %p'
fsync = off
synchronous_commit = off
full_page_writes = on
max_wal_size = 64MB
PGCONF
as_pg "$BIN/pg_ctl" -D "$D/data" -l "$D/server.log" -w -t 60 start >/dev/null
PGBR="pgbackrest --config=$CONF --stanza=main"
sql() { as_pg "$BIN/psql" -h "$D/socket" -p "$PORT" -U postgres -d "${DB:-shop}" -XqAt -v ON_ERROR_STOP=1 -c "$1"; }
as_pg $PGBR stanza-create
as_pg $PGBR check
DB=postgres sql "create database shop"
sql "create table orders (id serial primary key, note text not null, created_at timestamptz not null default clock_timestamp())"
sql "insert into orders (note) select 'before full ' || g from generate_series(1, 100) g"
as_pg $PGBR --type=full backup
sql "insert into orders (note) select 'before diff ' || g from generate_series(1, 50) g"
as_pg $PGBR --type=diff backup
sql "insert into orders (note) select 'before incr ' || g from generate_series(1, 50) g"
as_pg $PGBR --type=incr backup
# one transaction: its id is the xid target (recovery stops right after it commits)
echo "target_xid=$(sql "insert into orders (note) select 'before target ' || g from generate_series(1, 30) g; select txid_current()")"
# the target: a restore point, its LSN and the time right after it; every row above is
# before it, every row below after it
sql "select pg_create_restore_point('drill-point')" >/dev/null
echo "target_lsn=$(sql "select pg_current_wal_insert_lsn()")"
echo "target_time=$(sql "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")"
echo "rows_before=$(sql "select count(*) from orders")"
sql "insert into orders (note) select 'after target ' || g from generate_series(1, 40) g"
echo "rows_total=$(sql "select count(*) from orders")"
# the last rows reach the archive (check switches the WAL and waits for it)
as_pg $PGBR check
echo "config=$CONF"
echo "data=$D/data"
echo "socket=$D/socket"
echo "port=$PORT"
echo "repo=$D/repo"
echo "cipher_pass=test-cipher-pass-never-printed-5b1f"
