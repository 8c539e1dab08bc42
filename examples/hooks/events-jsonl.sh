#!/bin/sh
# Event hook for clr-cache -x / clr-subscribe -x (CLR_CACHE_EVENT,
# CLR_SUB_EVENT): append every event, as clr gives it on stdin (one JSON
# document: type, session, list_identifier, image{...}, filename), to a
# JSON-lines log that a message queue shipper or `jq` can follow:
#   jq -r 'select(.type=="AvailablePostfix") | .image["dc:title"]' /var/log/clr/events.jsonl
set -eu
log=${CLR_EVENTS_LOG:-/var/log/clr/events.jsonl}
mkdir -p "$(dirname "$log")"
# one line per event; flock keeps lines whole when runs overlap
{ tr -d '\n'; echo; } | flock "$log.lock" tee -a "$log" >/dev/null
