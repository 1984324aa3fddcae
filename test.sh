#!/usr/bin/env bash
# The test command: go vet, then every test with the race detector.
# MariaDB/MySQL at 127.0.0.1:3306 (root, no password) and Redis at
# 127.0.0.1:6379 are used where present (CARELOOP_TEST_MYSQL_DSN and
# CARELOOP_TEST_REDIS_ADDR override); tests that need them skip without them,
# or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
go test -race -count=1 -timeout 15m "$@" ./...
