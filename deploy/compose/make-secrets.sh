#!/usr/bin/env bash
# Make the secret files deploy/compose.yaml reads, in deploy/compose/secrets/ (or the folder
# given): random passwords and tokens, the URLs and the Redis ACL file built from them. A file
# that exists is kept, so running it again changes nothing; delete a file to make it anew.
#
#   KALEIDO_JWT_SECRET   the Kaleidoscope backend's JWT_SECRET (base64); default: a new key
#   REDIS_VERSION        7.2 (the compose file's Redis, the default) or 7.0: the ACL rule's
#                        commands differ (`kaleido redis-acl --redis-version`)
#   KALEIDO              the command that runs `kaleido` (for `kaleido redis-acl`); default:
#                        kaleido on PATH, else the repository's .venv/bin/kaleido; with only
#                        the image: KALEIDO="docker run --rm -e KALEIDO_REDIS_URL kaleido:0.2.0"
#
# The folder is 0700; its files are 0644 so that the containers' own users (Redis, PostgreSQL,
# Kaleido, Grafana run as different ones) can read them where Compose mounts them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/secrets}
mkdir -p "$dir"
chmod 700 "$dir"

if [ -z "${KALEIDO:-}" ]; then
    if command -v kaleido >/dev/null 2>&1; then
        KALEIDO=kaleido
    elif [ -x "$here/../../.venv/bin/kaleido" ]; then
        KALEIDO=$here/../../.venv/bin/kaleido
    else
        echo "make-secrets: no kaleido command: set KALEIDO (see the top of this script)" >&2
        exit 2
    fi
fi

token() { head -c "$1" /dev/urandom | base64 -w0 | tr -d '/+='; }

# put NAME COMMAND...: the file NAME gets COMMAND's output, unless it exists.
put() {
    local name=$1
    shift
    [ -s "$dir/$name" ] && return 0
    "$@" >"$dir/$name.new"
    chmod 644 "$dir/$name.new"
    mv "$dir/$name.new" "$dir/$name"
    echo "make-secrets: wrote $dir/$name"
}
read_secret() { tr -d '\n' <"$dir/$1"; }

put postgres_password token 32
put postgres_ml_password token 32
put redis_kaleido_password token 32
put redis_ml_password token 32
put kaleido_jwt_secret sh -c 'if [ -n "${KALEIDO_JWT_SECRET:-}" ]; then echo "$KALEIDO_JWT_SECRET";
                             else head -c 32 /dev/urandom | base64 -w0; echo; fi'
put kaleido_service_token token 48
put kaleido_admin_token token 32
put grafana_admin_password token 24
put kaleido_database_url echo "postgresql://kaleido:$(read_secret postgres_password)@postgres:5432/kaleido"
put kaleido_redis_url echo "redis://kaleido:$(read_secret redis_kaleido_password)@redis:6379/0"

redis_acl() {
    # default: only PING without a password (the health check); kaleido: exactly its rule;
    # ml: the Kaleidoscope ML service's workers (the `ml` profile), every key but no admin or
    # dangerous command.
    echo "user default on nopass resetchannels -@all +ping"
    KALEIDO_REDIS_URL=$(read_secret kaleido_redis_url) $KALEIDO redis-acl --redis-version "${REDIS_VERSION:-7.2}"
    local ml_hash
    ml_hash=$(read_secret redis_ml_password | sha256sum | cut -d' ' -f1)
    echo "user ml on #$ml_hash ~* &* +@all -@dangerous +info"
}
put redis_users.acl redis_acl

# The ML service's workers read their settings from the environment only.
ml_env() {
    echo "REDIS_URL=redis://ml:$(read_secret redis_ml_password)@redis:6379/0"
    echo "DB_HOST=postgres"
    echo "DB_PORT=5432"
    echo "DB_NAME=kaleido"
    echo "DB_USER=ml_search"
    echo "DB_PASSWORD=$(read_secret postgres_ml_password)"
    echo "ES_HOST=http://elasticsearch:9200"
    echo "AI_PLATFORM=${AI_PLATFORM:-huggingface}"
    echo "HF_API_TOKEN=${HF_API_TOKEN:-}"
}
put ml.env ml_env
