"""Composition: how each service is wired from settings (one module per service) and `serve`,
which runs any set of them in one process until one stop signal.

`plan` checks the configuration before anything opens; `serve` then opens the pools and the
broker, wires the services, and runs their background work in one TaskGroup, so that every task
ends with the process, on a clean stop and on a failure alike.
"""
