#!/usr/bin/env bash
# Install a single-node SLURM (slurmctld, slurmd, client tools) for the test suite's real-cluster tests.
#
# Run by `make slurm` (a prerequisite of `make test`). Installs with apt-get only when it can:
# running as root, apt-get present and slurmctld missing. Otherwise it prints why it skipped and
# exits 0: it never fails the build (the SLURM tests then skip with that reason).
# The daemons are NOT started here and no slurm.conf is written: tests/slurm_cluster.py does both,
# in a temporary folder, for the duration of the tests only.
set -u

say() { echo "install-slurm: $*"; }

# The daemons live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin"
if command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1; then
    say "SLURM already installed ($(slurmctld -V 2>/dev/null || echo 'version unknown')); nothing to do."
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    say "skipped: not root (needs apt-get as root); the SLURM tests will be skipped."
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "skipped: apt-get not found (not a Debian/Ubuntu system); the SLURM tests will be skipped."
    exit 0
fi

PKGS="slurmctld slurmd slurm-client"
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    # policy-rc.d exit 101: package scripts must not start the daemons (no systemd in CI containers).
    local prc=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc" && chmod +x "$prc" && created=1; fi
    apt-get install -y -q --no-install-recommends $PKGS
    local rc=$?
    [ "$created" = 1 ] && rm -f "$prc"
    return $rc
}

say "installing $PKGS with apt-get ..."
if apt_install >/tmp/install-slurm.log 2>&1; then
    :
else
    say "first attempt failed; running apt-get update and retrying."
    if ! { apt-get update -q && apt_install; } >>/tmp/install-slurm.log 2>&1; then
        say "skipped: apt-get could not install $PKGS (see /tmp/install-slurm.log); the SLURM tests will be skipped."
        tail -n 5 /tmp/install-slurm.log | sed 's/^/install-slurm:   /'
        exit 0
    fi
fi
say "installed: $(slurmctld -V 2>/dev/null)"
exit 0
