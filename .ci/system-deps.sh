#!/usr/bin/env bash
# Installs the Debian packages Parley runs and tests with, when missing.
# Kamailio is the SIP edge; sipp, espeak-ng, flite and sox are test tools, and chromium and
# firefox-esr run the dashboard's browser tests (Playwright drives Chromium, Marionette
# Firefox; no browser is downloaded).
set -euo pipefail
need=()
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
# SIP over TLS on the edge needs tls.so, packaged apart from Kamailio itself.
ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || need+=(kamailio-tls-modules)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v flite >/dev/null 2>&1 || need+=(flite)
command -v sox >/dev/null 2>&1 || need+=(sox)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || need+=(firefox-esr)
# Headless Firefox plays audio only through a sound server: the tests run PulseAudio with a
# null sink.
command -v pulseaudio >/dev/null 2>&1 || need+=(pulseaudio)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "parley: installing system packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "parley: missing system packages: ${need[*]}" >&2
    echo "parley: install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
fi
