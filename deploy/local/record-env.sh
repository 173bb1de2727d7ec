#!/usr/bin/env bash
# Prints the DOCAXIS_* settings of this environment as defaults a later shell can source:
# `make run` records what it serves with, and `make demo` / `make audit` source the record so they
# reach that axis, while a variable set in their own environment still wins.
set -euo pipefail
umask 077
while IFS= read -r name; do
    printf '%s=${%s:-%q}\n' "$name" "$name" "${!name}"
done < <(compgen -e | grep '^DOCAXIS_' | sort)
