#!/bin/sh
# clr-cache hook: import each newly published OVF template or ISO into
# vCenter with govc (https://github.com/vmware/govmomi/tree/main/govc).
# Configure govc through its usual environment (GOVC_URL, GOVC_USERNAME,
# GOVC_PASSWORD or a session file, GOVC_DATASTORE, GOVC_FOLDER), e.g. in
# a systemd EnvironmentFile. The published path is
# ${VMCATCHER_CACHE_DIR_CACHE}${VMCATCHER_EVENT_DC_IDENTIFIER}: a folder for
# OVF templates, a file otherwise; it was verified against the signed list.
set -eu
[ "${CLR_EVENT_TYPE:-}" = AvailablePostfix ] || exit 0
path="${CLR_CACHE_DIR_CACHE}${CLR_EVENT_DC_IDENTIFIER}"
name="${CLR_EVENT_DC_TITLE:-$CLR_EVENT_DC_IDENTIFIER}-${CLR_EVENT_HV_VERSION:-0}"
case "${CLR_EVENT_HV_FORMAT:-}" in
ovf)
	ovf=$(find "$path/" -maxdepth 1 -name '*.ovf' | head -n 1)
	[ -n "$ovf" ] || { echo "no .ovf in $path" >&2; exit 1; }
	govc import.ovf -name "$name" "$ovf"
	;;
*)
	# ISO, qcow2, raw...: upload it to the datastore as it is
	govc datastore.upload "$path" "clr/$name.${CLR_EVENT_HV_FORMAT:-img}"
	;;
esac
