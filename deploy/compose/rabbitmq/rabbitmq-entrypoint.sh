#!/usr/bin/env bash
# The nodes share an Erlang cookie and the docaxis user's definition, both from secrets; the
# cookie file must be owned by rabbitmq and unreadable to others, which a bind-mounted secret
# cannot promise, so it is copied.
set -euo pipefail
install -o rabbitmq -g rabbitmq -m 0400 /run/secrets/erlang-cookie /var/lib/rabbitmq/.erlang.cookie
install -d /etc/rabbitmq/conf.d
install -o rabbitmq -g rabbitmq -m 0400 /run/secrets/rabbitmq-users.conf /etc/rabbitmq/conf.d/10-users.conf
exec docker-entrypoint.sh rabbitmq-server
