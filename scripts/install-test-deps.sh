#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real (Postfix, Cyrus SASL, nftables,
# Redis, pflogsumm, headless Chromium for the HTML report, Dovecot's doveconf for the audit). Idempotent: installs only what is missing. Without root it only reports,
# and the tests that need the missing parts skip with a clear reason.
set -euo pipefail
need=()
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || need+=(postfix)
command -v saslpasswd2 >/dev/null 2>&1 || [ -x /usr/sbin/saslpasswd2 ] || need+=(sasl2-bin)
[ -e /usr/lib/x86_64-linux-gnu/sasl2/libsasldb.so.2 ] || ls /usr/lib/*/sasl2/libsasldb.so* >/dev/null 2>&1 || need+=(libsasl2-modules-db)
ls /usr/lib/*/sasl2/libplain.so* >/dev/null 2>&1 || need+=(libsasl2-modules)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v pflogsumm >/dev/null 2>&1 || need+=(pflogsumm)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v doveconf >/dev/null 2>&1 || need+=(dovecot-core)
if [ ${#need[@]} -eq 0 ]; then
  echo "test dependencies: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test dependencies missing (${need[*]}); not root, so not installing: those tests will skip" >&2
  exit 0
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# The suite runs its own private Postfix: the system one needs no configuration and no port 25.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# Packages are installed for their programs only: no daemon may start (Dovecot, Redis…). Where
# the image has no policy-rc.d, put one in place for the duration of the install.
temp_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  temp_policy=/usr/sbin/policy-rc.d
fi
trap '[ -n "$temp_policy" ] && rm -f "$temp_policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
