#!/bin/sh
# What the bridge image runs: bring the database to the current schema, then serve. The
# configuration comes from $SMART_COMMUNITY_CONFIG (a YAML file, if set) and the
# SMART_COMMUNITY_BRIDGE_* environment. exec, so the container's stop signal reaches the bridge.
set -eu
if [ -n "${SMART_COMMUNITY_CONFIG:-}" ]; then
    set -- --config "$SMART_COMMUNITY_CONFIG"
fi
python -m smart_community_bridge "$@" migrate
exec python -m smart_community_bridge "$@" serve
