#!/bin/sh
# tests/services/check.sh: can this machine start the services the specs use?
#
# Makes sure munge has its key (Debian's postinst writes /etc/munge/munge.key; mungekey
# writes one when it is missing), then starts and stops a PostgreSQL server and a one-node
# SLURM cluster in temporary folders (postgres.sh, slurm.sh). .ci/run calls it after
# `make deps`; exit 1 naming the service that cannot start.
set -u
here=$(cd "$(dirname "$0")" && pwd)
rc=0
if [ "$(id -u)" = 0 ] && [ ! -f /etc/munge/munge.key ] && command -v mungekey > /dev/null 2>&1; then
    mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key &&
        chmod 600 /etc/munge/munge.key && echo "services: created /etc/munge/munge.key"
fi
d=$(mktemp -d /tmp/moonbert-check-pg-XXXXXX)
if url=$("$here/postgres.sh" start "$d"); then
    echo "services: PostgreSQL starts ($url)"
else
    echo "services: PostgreSQL cannot start" >&2; rc=1
fi
"$here/postgres.sh" stop "$d"; rm -rf "$d"
if [ "$(id -u)" != 0 ]; then
    echo "services: not root, so no SLURM (slurmd runs jobs as their users): its specs will skip"
    exit $rc
fi
d=$(mktemp -d /tmp/moonbert-check-slurm-XXXXXX)
if conf=$("$here/slurm.sh" start "$d"); then
    echo "services: SLURM starts ($conf)"
else
    echo "services: SLURM cannot start" >&2; rc=1
fi
"$here/slurm.sh" stop "$d"; rm -rf "$d"
exit $rc
