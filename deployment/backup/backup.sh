#!/usr/bin/env bash
# Back up one PostgreSQL database: pg_dump (custom format) | gzip, plus a SHA-256 file, then
# delete this backup set's files older than the retention, then (optionally) copy both files to an
# S3-compatible bucket.
#
# Output: <dir>/<name>-<UTC timestamp>.dump.gz and <same>.sha256 (sha256sum format).
# Restore with restore.sh, which verifies the checksum before touching the database.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: backup.sh [options]

Dump a PostgreSQL database to <dir>/<name>-<YYYYmmddTHHMMSSZ>.dump.gz with a .sha256 beside it.

Options:
  -d, --database-url URL    database to back up (default: $DATABASE_URL)
  -o, --output-dir DIR      where backups go (default: $BACKUP_DIR, else ./backups)
  -n, --name NAME           file name prefix, [A-Za-z0-9_.-] (default: $BACKUP_NAME, else chatmill)
  -r, --retention-days N    delete <name>-*.dump.gz (and .sha256) older than N days;
                            0 keeps everything (default: $BACKUP_RETENTION_DAYS, else 14)
  -h, --help                show this help

Environment:
  PG_BIN_DIR              folder holding pg_dump (default: from PATH). pg_dump must be at least
                          the server's major version.
  BACKUP_S3_URI           e.g. s3://bucket/chatmill — upload both files with the aws CLI when set
                          (skipped with a warning when the aws CLI is not installed)
  BACKUP_S3_ENDPOINT_URL  endpoint of an S3-compatible store (MinIO, R2, B2, ...)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION   as usual for the aws CLI

Exit status: 0 on success, 1 on failure (nothing partial is left behind), 2 on bad usage.
USAGE
}

die() { echo "backup.sh: error: $*" >&2; exit 1; }
usage_error() { echo "backup.sh: $*" >&2; echo "Try 'backup.sh --help'." >&2; exit 2; }
log() { echo "backup.sh: $*" >&2; }

database_url="${DATABASE_URL:-}"
output_dir="${BACKUP_DIR:-./backups}"
name="${BACKUP_NAME:-chatmill}"
retention_days="${BACKUP_RETENTION_DAYS:-14}"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -d|--database-url) [[ $# -ge 2 ]] || usage_error "$1 needs a value"; database_url="$2"; shift 2 ;;
        -o|--output-dir) [[ $# -ge 2 ]] || usage_error "$1 needs a value"; output_dir="$2"; shift 2 ;;
        -n|--name) [[ $# -ge 2 ]] || usage_error "$1 needs a value"; name="$2"; shift 2 ;;
        -r|--retention-days) [[ $# -ge 2 ]] || usage_error "$1 needs a value"; retention_days="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done

[[ -n "$database_url" ]] || usage_error "no database: pass --database-url or set DATABASE_URL"
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "--name may only contain letters, digits, '_', '.', '-'"
[[ "$retention_days" =~ ^[0-9]+$ ]] || usage_error "--retention-days must be a whole number of days"

pg_dump_bin="pg_dump"
if [[ -n "${PG_BIN_DIR:-}" ]]; then
    pg_dump_bin="${PG_BIN_DIR%/}/pg_dump"
fi
command -v "$pg_dump_bin" >/dev/null 2>&1 || die "pg_dump not found (${pg_dump_bin}); install the PostgreSQL client or set PG_BIN_DIR"
for tool in gzip sha256sum find; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

umask 077  # backups hold every tenant's data: readable by the owner only
mkdir -p "$output_dir"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
base="${name}-${stamp}.dump.gz"
final="${output_dir%/}/${base}"
partial="${output_dir%/}/.${base}.partial"
[[ ! -e "$final" ]] || die "$final already exists"

cleanup() { rm -f -- "$partial"; }
trap cleanup EXIT

log "dumping database to $final"
# -Fc: custom format (pg_restore can select, reorder and parallelise); -Z0 because gzip compresses.
# The URL goes through --dbname so no password ever appears in this script's output.
"$pg_dump_bin" --format=custom --compress=0 --no-password --dbname="$database_url" | gzip -6 > "$partial"
gzip -t "$partial" || die "the compressed dump does not verify"
mv -- "$partial" "$final"

# sha256sum format ("<hex>  <file name>"), with the bare file name so the pair can be moved together.
(cd "$(dirname -- "$final")" && sha256sum -- "$base" > "${base}.sha256")
log "wrote $final ($(wc -c < "$final") bytes) and ${final}.sha256"

if [[ "$retention_days" -gt 0 ]]; then
    # -mtime +N: modified more than N*24h ago. Only this backup set's files are considered.
    while IFS= read -r -d '' old; do
        log "retention: deleting $old"
        rm -f -- "$old" "${old}.sha256"
    done < <(find "$output_dir" -maxdepth 1 -type f -name "${name}-*.dump.gz" -mtime "+${retention_days}" -print0)
fi

if [[ -n "${BACKUP_S3_URI:-}" ]]; then
    if command -v aws >/dev/null 2>&1; then
        endpoint=()
        if [[ -n "${BACKUP_S3_ENDPOINT_URL:-}" ]]; then
            endpoint=(--endpoint-url "$BACKUP_S3_ENDPOINT_URL")
        fi
        target="${BACKUP_S3_URI%/}"
        log "uploading to ${target}/"
        aws "${endpoint[@]}" s3 cp --only-show-errors "$final" "${target}/${base}"
        aws "${endpoint[@]}" s3 cp --only-show-errors "${final}.sha256" "${target}/${base}.sha256"
    else
        log "warning: BACKUP_S3_URI is set but the aws CLI is not installed; the backup stays local only"
    fi
fi

echo "$final"
