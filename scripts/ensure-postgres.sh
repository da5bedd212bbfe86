#!/usr/bin/env bash
# Starts PostgreSQL when nothing answers on 127.0.0.1:5432 (trust auth for local tests).
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then exit 0; fi
ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
if [ -z "$ver" ]; then
  echo "ensure-postgres: no PostgreSQL cluster under /etc/postgresql" >&2; exit 1
fi
conf=/etc/postgresql/$ver/main
grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf" || \
  sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 || \
  psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null
