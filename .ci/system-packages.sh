#!/usr/bin/env bash
# Debian packages the tests drive for real: headless Chromium (the HTML report is opened in a
# browser), Prometheus, the Prometheus Pushgateway and InfluxDB 1.x (live metrics are read
# back through their APIs). Installed only when missing; the tests fail, naming the package,
# if they are still missing.
set -uo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
command -v influxd >/dev/null || need+=(influxdb)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
echo "installing ${need[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# Debian's packages start their services only under systemd; none runs in CI containers
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/tmp/lens-apt.log 2>&1 || { echo "apt-get install ${need[*]} failed:"; tail -20 /tmp/lens-apt.log; }
