#!/bin/bash
# Description: Install Node.js LTS and npm from the distribution.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends nodejs npm ca-certificates
node --version
