#!/usr/bin/env bash
# The test command: go vet and the database-error check, then every test
# with the race detector.
# MariaDB/MySQL at 127.0.0.1:3306 (root, no password) and Redis at
# 127.0.0.1:6379 are used where present (CARELOOP_TEST_MYSQL_DSN and
# CARELOOP_TEST_REDIS_ADDR override); tests that need them skip without them,
# or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
# Every database call's error is checked (a GORM chain used as a statement
# silently drops its error): cmd/dbcheck finds them.
go run ./cmd/dbcheck -test=false ./...
go test -race -count=1 -timeout 15m "$@" ./...
