#!/usr/bin/env bash
# Sets up this machine for `make test` and `make local`; idempotent, the second run skips what is done.
#
#   local/setup.sh [system] [venv] [services] [image]     (no argument: all four)
#
# system   Debian packages: rabbitmq-server, docker.io, busybox-static, git, chromium, wrk (the
#          load generator of `make bench`), postgresql (the tests start a throwaway cluster of
#          their own from its programs, tests/postgres.py; nothing here starts a server)
# venv     .venv with the project and its test extras (again only when pyproject.toml changed)
# services RabbitMQ and the Docker engine, started when they are not running
# image    tasuki/busybox, a tiny image FROM scratch with a static busybox (no registry needed)
#
# Where it cannot install (not root, not Debian) it stops with one line saying what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(rabbitmq-server docker.io busybox-static git chromium wrk postgresql)
IMAGE=tasuki/busybox:latest
LOGDIR=${TASUKI_LOG_DIR:-/var/log/tasuki}

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

missing_packages() {
  local p out=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

system() {
  command -v dpkg-query >/dev/null || die "this is not Debian: install RabbitMQ 3.10+, Docker, git, a static busybox, chromium, wrk and PostgreSQL 13+, then run again"
  local missing; missing=$(missing_packages)
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages; as root run: apt-get install -y $missing"
  say "installing $missing"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

venv() {
  local stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
  [ -f "$stamp" ] && return 0
  say "creating .venv and installing the project with its test extras"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # (pip's warnings about index folders this machine does not have are noise: left out)
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2> >(grep -v "^WARNING: Location" >&2)
  rm -f .venv/.installed-*
  touch "$stamp"
}

wait_for() {  # wait_for SECONDS DESCRIPTION LOG COMMAND...
  local deadline=$((SECONDS + $1)) what=$2 logs=$3; shift 3
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not come up within $1s; see $logs"
    sleep 0.5
  done
}

services() {
  mkdir -p "$LOGDIR"
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    say "starting RabbitMQ"
    # (its own log stays where the package puts it: the server runs as the rabbitmq user)
    rabbitmq-server -detached >"$LOGDIR/rabbitmq-start.log" 2>&1 || true
    wait_for 90 RabbitMQ "/var/log/rabbitmq and $LOGDIR/rabbitmq-start.log" rabbitmqctl -q await_startup
  fi
  if ! docker info >/dev/null 2>&1; then
    say "starting the Docker engine"
    nohup dockerd >"$LOGDIR/dockerd.log" 2>&1 &
    wait_for 60 "the Docker engine" "$LOGDIR/dockerd.log" docker info
  fi
}

image() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  local busybox; busybox=$(command -v busybox || true)
  [ -n "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 || die "need a static busybox: apt-get install busybox-static"
  say "building $IMAGE from scratch with $busybox"
  local ctx; ctx=$(mktemp -d)
  cp "$busybox" "$ctx/busybox"
  cp infra/images/busybox/Dockerfile "$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null 2>"$ctx/err" || { cat "$ctx/err" >&2; die "building $IMAGE failed"; }
  rm -rf "$ctx"
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(system venv services image)
for step in "${steps[@]}"; do "$step"; done
