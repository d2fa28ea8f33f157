#!/usr/bin/env bash
# Installs the Debian packages the sandbox (and the tests) run, when they are missing:
#   sandbox/system-packages.sh            prometheus, prometheus-pushgateway (the demo)
#   sandbox/system-packages.sh --tests    the same, kubectl (the runbook's commands) and chromium
#                                         (the browser tests drive Debian's Chromium; Playwright's
#                                         own browser download is not used)
# Idempotent: nothing is installed (and no root is needed) when everything is there already.
set -euo pipefail

packages=(prometheus prometheus-pushgateway)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# Any kubectl on PATH will do; without one, Debian's kubernetes-client (old, enough for the runbook).
if [[ "${1:-}" == "--tests" ]] && ! command -v kubectl >/dev/null; then
  missing+=(kubernetes-client)
fi
if [[ "${1:-}" == "--tests" ]] && [[ ! -x /usr/bin/chromium ]]; then
  missing+=(chromium)
fi
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "missing: ${missing[*]} (Debian packages); install Prometheus, the Pushgateway and kubectl so that" \
       "prometheus, prometheus-pushgateway (or pushgateway) and kubectl are on PATH, and Chromium at /usr/bin/chromium" >&2
  exit 1
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "installing ${missing[*]} needs root (or sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages may start their own daemons on the default ports; the sandbox starts its own
# instances on free ports and does not need them.
for service in prometheus prometheus-pushgateway; do
  (command -v service >/dev/null && "${sudo[@]}" service "$service" stop >/dev/null 2>&1) || true
done
