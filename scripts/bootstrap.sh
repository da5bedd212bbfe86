#!/usr/bin/env bash
# Installs everything the node and its tests need on a Debian machine (run as root).
# Idempotent: each step is skipped when already done. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in sipp:sip-tester baresip:baresip espeak-ng:espeak-ng sox:sox psql:postgresql-client \
            pg_ctlcluster:postgresql open_jtalk:open-jtalk ip:iproute2 unshare:util-linux \
            chromium:chromium openssl:openssl; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv python3-dev); fi
# The wallboard's Japanese labels need a CJK font in the browser test.
[ -d /usr/share/fonts/opentype/noto ] || need_apt+=(fonts-noto-cjk)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
