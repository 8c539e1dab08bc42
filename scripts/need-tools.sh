#!/usr/bin/env bash
# need-tools.sh PKG:CMD... — make sure the system tools the demo and the
# tests use are installed. As root, missing Debian packages are installed
# with apt-get; otherwise the script stops with the exact command to run.
set -euo pipefail
missing=()
for spec in "$@"; do
	pkg=${spec%%:*}
	cmd=${spec#*:}
	if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
		missing+=("$pkg")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing missing packages: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	exit 0
fi
echo "missing system packages: ${missing[*]}" >&2
echo "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
exit 1
