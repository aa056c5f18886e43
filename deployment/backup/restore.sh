#!/usr/bin/env bash
# Restore a backup made by backup.sh into a PostgreSQL database.
#
# Order of checks, and nothing touches the target before all of them pass:
#   1. the SHA-256 of the file matches its .sha256 file (refuses on mismatch or when missing),
#   2. the gzip stream is intact and pg_restore can read the archive's table of contents,
#   3. the target database is empty (unless --clean is given).
# Then pg_restore runs in ONE transaction (all or nothing), without owners and grants, so the
# backup can be restored as a different role than the one that owned the original database.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: restore.sh [options] BACKUP_FILE

Verify BACKUP_FILE (<name>-<timestamp>.dump.gz from backup.sh) against its checksum file and
restore it into the target database.

Options:
  -d, --database-url URL   target database (default: $DATABASE_URL). It must exist; create it
                           first, e.g.  createdb -O chatmill chatmill_restored
  -c, --checksum FILE      checksum file (default: BACKUP_FILE.sha256)
      --clean              drop the backup's objects from the target first (to restore over an
                           existing copy). Without it the target must not contain any table.
  -h, --help               show this help

Environment:
  PG_BIN_DIR   folder holding pg_restore and psql (default: from PATH)

Notes:
  * Objects are restored without their original owner and privileges (--no-owner --no-acl):
    everything ends up owned by the role in the URL.
  * Extensions (pgvector) must be installable by that role, or already created in the target
    by a superuser (the bundled postgres init script does this for the chatmill database).

Exit status: 0 restored, 1 failure (database unchanged), 2 bad usage, 3 checksum refused.
USAGE
}

die() { echo "restore.sh: error: $*" >&2; exit 1; }
usage_error() { echo "restore.sh: $*" >&2; echo "Try 'restore.sh --help'." >&2; exit 2; }
log() { echo "restore.sh: $*" >&2; }

database_url="${DATABASE_URL:-}"
checksum_file=""
clean=0
backup_file=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        -d|--database-url) [[ $# -ge 2 ]] || usage_error "$1 needs a value"; database_url="$2"; shift 2 ;;
        -c|--checksum) [[ $# -ge 2 ]] || usage_error "$1 needs a value"; checksum_file="$2"; shift 2 ;;
        --clean) clean=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; [[ $# -eq 1 ]] || usage_error "expected exactly one BACKUP_FILE"; backup_file="$1"; shift ;;
        -*) usage_error "unknown option: $1" ;;
        *) [[ -z "$backup_file" ]] || usage_error "expected exactly one BACKUP_FILE"; backup_file="$1"; shift ;;
    esac
done

[[ -n "$backup_file" ]] || usage_error "missing BACKUP_FILE"
[[ -n "$database_url" ]] || usage_error "no target database: pass --database-url or set DATABASE_URL"
[[ -f "$backup_file" ]] || die "backup file not found: $backup_file"
[[ -n "$checksum_file" ]] || checksum_file="${backup_file}.sha256"

pg_restore_bin="pg_restore"
psql_bin="psql"
if [[ -n "${PG_BIN_DIR:-}" ]]; then
    pg_restore_bin="${PG_BIN_DIR%/}/pg_restore"
    psql_bin="${PG_BIN_DIR%/}/psql"
fi
for tool in "$pg_restore_bin" "$psql_bin" gzip sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install the PostgreSQL client or set PG_BIN_DIR"
done

# ---------------------------------------------------------------- 1. checksum
if [[ ! -f "$checksum_file" ]]; then
    echo "restore.sh: REFUSED: checksum file not found: $checksum_file" >&2
    exit 3
fi
expected="$(awk 'NR == 1 { print tolower($1) }' "$checksum_file")"
if [[ ! "$expected" =~ ^[0-9a-f]{64}$ ]]; then
    echo "restore.sh: REFUSED: $checksum_file does not hold a SHA-256 checksum" >&2
    exit 3
fi
actual="$(sha256sum < "$backup_file" | awk '{ print $1 }')"
if [[ "$actual" != "$expected" ]]; then
    echo "restore.sh: REFUSED: checksum mismatch for $backup_file" >&2
    echo "restore.sh:   expected $expected" >&2
    echo "restore.sh:   actual   $actual" >&2
    echo "restore.sh: the file is corrupt or not the one the checksum was made for; nothing was restored." >&2
    exit 3
fi
log "checksum OK ($actual)"

# ---------------------------------------------------------------- 2. archive readable
workdir="$(mktemp -d "${TMPDIR:-/tmp}/chatmill-restore.XXXXXX")"
cleanup() { rm -rf -- "$workdir"; }
trap cleanup EXIT
archive="$workdir/archive.dump"
gzip -dc < "$backup_file" > "$archive" || die "$backup_file is not a valid gzip file"
"$pg_restore_bin" --list "$archive" > "$workdir/toc.full" || die "$backup_file is not a pg_dump custom-format archive"
# COMMENT ON EXTENSION needs the extension's owner (a superuser); the comment is cosmetic.
grep -v -E '^[0-9]+; [0-9]+ [0-9]+ COMMENT - EXTENSION ' "$workdir/toc.full" > "$workdir/toc" || true

# ---------------------------------------------------------------- 3. target
psql_target=("$psql_bin" --no-psqlrc --no-password --quiet --tuples-only --no-align --set ON_ERROR_STOP=1 --dbname="$database_url")
tables="$("${psql_target[@]}" --command "
    SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'")" || die "cannot connect to the target database"
if [[ "$tables" != "0" && "$clean" -ne 1 ]]; then
    die "the target database already has $tables table(s); restore into an empty database or pass --clean"
fi

# ---------------------------------------------------------------- restore
restore_args=(--no-owner --no-acl --exit-on-error --single-transaction --no-password
              --use-list="$workdir/toc" --dbname="$database_url")
if [[ "$clean" -eq 1 ]]; then
    restore_args+=(--clean --if-exists)
fi
log "restoring into the target database (one transaction)"
"$pg_restore_bin" "${restore_args[@]}" "$archive" || die "pg_restore failed; the transaction was rolled back"
log "restore complete"
