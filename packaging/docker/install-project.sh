#!/bin/sh
# Install pam-slurmjwt into this image the way a site would: build the
# Debian package from the source tree (make deb) and install it with apt,
# which pulls in Debian's own python3-jwt. The demo and its test thereby
# prove the package on a clean system. Usage: install-project SRCDIR
set -eu
src=$1
make -s -C "$src" deb
apt-get install -y -qq --no-install-recommends "$src"/build/pam-slurmjwt_*_*.deb
rm -rf "$src/build"
