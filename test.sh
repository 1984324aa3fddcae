#!/usr/bin/env bash
# The test command: the staff console rebuilt from its sources (and checked
# against the committed build), go vet and the database-error check, then
# every test with the race detector, the console's browser test among them.
# MariaDB/MySQL at 127.0.0.1:3306 (root, no password) and Redis at
# 127.0.0.1:6379 are used where present (CARELOOP_TEST_MYSQL_DSN and
# CARELOOP_TEST_REDIS_ADDR override); tests that need them, Node or
# Chromium skip without them, or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")"
# Under CI the browser test must run: Chromium (and a Chinese font for its
# screenshots) come from Debian's packages when missing.
if [ "${CI:-}" = "true" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
	apt-get install -y -q chromium fonts-wqy-microhei >/dev/null ||
		{ apt-get update -q >/dev/null && apt-get install -y -q chromium fonts-wqy-microhei >/dev/null; }
fi
if command -v npm >/dev/null; then
	(cd console && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build >/dev/null)
	# The committed build is what `go run .` serves: it must be the sources'.
	if ! git diff --quiet -- console/dist || [ -n "$(git ls-files --others --exclude-standard console/dist)" ]; then
		echo "console/dist differs from a fresh build of console/src: run (cd console && npm run build) and commit console/dist" >&2
		git status --short -- console/dist >&2
		exit 1
	fi
elif [ "${CI:-}" = "true" ]; then
	echo "CI=true and npm is missing: the console cannot be checked" >&2
	exit 1
fi
go vet ./...
# Every database call's error is checked (a GORM chain used as a statement
# silently drops its error): cmd/dbcheck finds them.
go run ./cmd/dbcheck -test=false ./...
go test -race -count=1 -timeout 15m "$@" ./...
