#!/usr/bin/env bash
# Installs what `logflume up` needs on a Debian/Ubuntu machine without Docker:
# the PostgreSQL server packages, a Java 17 runtime and Maven (to fetch the Kafka jars), and
# a C compiler for the compiled stages.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# A C compiler and Python's headers: `pip install` compiles the stages with mypyc (setup.py;
# without them they stay pure Python, ~10-16% more CPU per event).
command -v cc >/dev/null || missing+=(gcc)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || missing+=(python3-dev)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian package starts a cluster of its own on port 5432; logflume runs its own
# cluster in .logflume/, so that one is not needed (and is left alone if it was there).
echo "prerequisites present: postgres $(ls -d /usr/lib/postgresql/*/ | xargs -n1 basename | sort -n | tail -1), $(java -version 2>&1 | head -1), $(mvn -v 2>/dev/null | head -1)"
