#!/bin/sh
# SubscriptionImageNew hook for clr-subscribe -x (or CLR_SUB_EVENT /
# VMCATCHER_SUB_EVENT). clr runs it once per image a list adds, with the
# values in CLR_EVENT_* and VMCATCHER_EVENT_* (never in the command line)
# and the event as JSON on stdin. It is killed after --hook-timeout (10 s);
# a failure is logged and the update goes on. See docs/hooks.md.
#
# This one tells the operators and, for a trusted publisher, selects the
# new image for the cache right away (with --imagelist-newimage-accept;
# in the default refuse mode the image is not created).
set -eu
[ "${CLR_EVENT_TYPE:-}" = SubscriptionImageNew ] || exit 0
logger -t clr "new image ${CLR_EVENT_DC_IDENTIFIER} (${CLR_EVENT_DC_TITLE:-untitled}) in list ${CLR_EVENT_IL_DC_IDENTIFIER}"
case "${CLR_EVENT_IL_DC_IDENTIFIER}" in
# 63175437-7d59-4851-b333-c96cb6545a86) clr-image -a -u "$CLR_EVENT_DC_IDENTIFIER" --subscription "$CLR_EVENT_IL_DC_IDENTIFIER" ;;
*) ;;
esac
