#!/usr/bin/env bash
# Sourced by bench/run and tests/run: installs, with apt-get, whatever of
# weft's build and test dependencies this machine lacks (Debian 12 names).
# Needs root or sudo only when something is missing.

weft_deps_install() {
	local need=() pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
			grep -q "install ok installed" || need+=("$pkg")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	echo "weft: installing ${need[*]}" >&2
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || {
			echo "weft: need root (or sudo) to install ${need[*]}" >&2
			return 1
		}
		sudo="sudo"
	fi
	$sudo apt-get update -qq >&2 &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
			--no-install-recommends "${need[@]}" >&2
}

WEFT_BASE_DEPS=(gcc make cmake pkg-config liburing-dev libck-dev libcriterion-dev)
