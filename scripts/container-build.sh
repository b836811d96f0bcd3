#!/usr/bin/env bash
# Build Kaleido's container image (deploy/container/Containerfile) with buildah, on a Debian
# machine that reaches Debian's package mirrors and PyPI but no container registry:
#
#   1. the base image, `localhost/kaleido-base:bookworm`, is Debian bookworm made from Debian's
#      packages with debootstrap (minbase, documentation and locales left out, as in Debian's
#      own slim images) and committed with buildah; it is made once and reused;
#   2. the image is built on it with `buildah bud --isolation chroot` (the isolation that works
#      where no OCI runtime can run containers), cached layer by layer.
#
# Prints the image's name, size and build time. Installs buildah and debootstrap from Debian
# when missing. Safe to run again; KALEIDO_REBUILD_BASE=1 makes the base again.
#
# Settings (environment): KALEIDO_IMAGE (default localhost/kaleido:VERSION, also tagged
# :latest), KALEIDO_BASE_IMAGE (default localhost/kaleido-base:bookworm; any image with
# Debian's apt, e.g. one pulled from a registry, is used as it is), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), PIP_CERT (a CA bundle pip inside the build trusts, for a
# network that intercepts TLS; default: this machine's bundle when pip here uses one).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image=${KALEIDO_IMAGE:-localhost/kaleido:$version}
base=${KALEIDO_BASE_IMAGE:-localhost/kaleido-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

say() { echo "container-build: $*" >&2; }

# buildah's image store and debootstrap need root.
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env "$0" "$@"
need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

has_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# The slimming of Debian's own bookworm-slim image: no documentation but the copyright files,
# no manual pages, no translations. Written before any package is unpacked into the base.
dpkg_excludes() {
    cat <<'EXCLUDES'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EXCLUDES
}

build_base() {
    say "making the base image $base: debootstrap $suite (minbase) from $mirror"
    local ctr root
    ctr=$(buildah from scratch)
    root=$(buildah mount "$ctr")
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    dpkg_excludes >"$root/etc/dpkg/dpkg.cfg.d/slim"
    debootstrap --variant=minbase "$suite" "$root" "$mirror" >/tmp/kaleido-debootstrap.log 2>&1 || {
        tail -20 /tmp/kaleido-debootstrap.log >&2
        buildah rm "$ctr" >/dev/null
        return 1
    }
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/90-no-recommends"
    # What debootstrap unpacked before the excludes applied, its caches and logs.
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,lintian}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/cache/debconf/*-old "$root"/var/log/*.log "$root"/var/log/apt/* \
        "$root"/dev/* "$root"/tmp/* "$root"/root/.cache
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash --label org.opencontainers.image.description="Debian $suite (debootstrap minbase)" \
        "$ctr"
    buildah commit --rm --quiet "$ctr" "$base" >/dev/null
}

if [ -n "${KALEIDO_REBUILD_BASE:-}" ] || ! has_image "$base"; then
    if [ -z "${KALEIDO_BASE_IMAGE:-}" ] || [ "$base" = localhost/kaleido-base:bookworm ]; then
        build_base
    else
        say "$base is not here: pull it first (buildah pull $base) or leave KALEIDO_BASE_IMAGE unset"
        exit 1
    fi
fi

# pip inside the build checks PyPI's certificate with this bundle, handed in as a build secret
# (it stays out of the image).
ca=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
secret=()
[ -n "$ca" ] && [ -f "$ca" ] && secret=(--secret "id=pip_ca,src=$ca")

say "building $image on $base"
start=$(date +%s.%N)
buildah bud --isolation chroot --format docker --layers --quiet \
    --ignorefile deploy/container/Containerfile.dockerignore \
    -f deploy/container/Containerfile --build-arg "BASE=$base" "${secret[@]}" \
    -t "$image" -t "${image%:*}:latest" . >/dev/null
seconds=$(python3 -c "import sys; print(round($(date +%s.%N) - $start))")
sizes=$(buildah images --noheading --format '{{.Size}}' "$image")
size=${sizes%%$'\n'*}
say "built $image ($size) in ${seconds} s"
echo "$image"
