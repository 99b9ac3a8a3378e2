# ruff: noqa: E501 - one row per line keeps the generated table readable and diffable
"""Every flag and ``HOOKFAN_*`` variable hookfan took before its CLI moved to Click still works,
with the same meaning. The table was generated from ``hookfan/config.py`` and ``hookfan/cli.py``
as they were before the port (argparse) and is kept as it was: it is the promise to users.

A row: (command line before the flag, flag, environment variable, a value, other flags that
value needs, the setting it sets, ``repr`` of the value it must get, or ``error``).
``{file}`` stands for an existing file.
"""

from __future__ import annotations

from typing import Any

import pytest

from hookfan import cli

OLD_FLAGS = [
    ('app', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('app', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('app', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('app', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('app', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('app', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('app', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('app', 'http-addr', 'HOOKFAN_HTTP_ADDR', '127.0.0.1:9999', [], 'intake.http_addr', "('127.0.0.1', 9999)"),
    ('app', 'workers', 'HOOKFAN_WORKERS', '7', [], 'intake.workers', '7'),
    ('app', 'threads', 'HOOKFAN_THREADS', '7', [], 'intake.threads', '7'),
    ('app', 'max-pending', 'HOOKFAN_MAX_PENDING', '7', [], 'intake.max_pending', '7'),
    ('app', 'body-size-limit', 'HOOKFAN_BODY_SIZE_LIMIT', '7', [], 'intake.body_size_limit', '7'),
    ('app', 'max-header-bytes', 'HOOKFAN_MAX_HEADER_BYTES', '7', [], 'intake.max_header_bytes', '7'),
    ('app', 'trusted-proxies', 'HOOKFAN_TRUSTED_PROXIES', '10.1.0.0/16, fd00::/8', [], 'intake.trusted_proxies', "('10.1.0.0/16', 'fd00::/8')"),
    ('app', 'proxy-read-timeout', 'HOOKFAN_PROXY_READ_TIMEOUT', '1500ms', [], 'intake.proxy_read_timeout', '1.5'),
    ('app', 'proxy-write-timeout', 'HOOKFAN_PROXY_WRITE_TIMEOUT', '1500ms', [], 'intake.proxy_write_timeout', '1.5'),
    ('app', 'dedupe-headers', 'HOOKFAN_DEDUPE_HEADERS', 'X-A, X-B', [], 'intake.dedupe_headers', "('X-A', 'X-B')"),
    ('app', 'dedupe-window', 'HOOKFAN_DEDUPE_WINDOW', '1500ms', [], 'intake.dedupe_window', '1.5'),
    ('app', 'delivery-timeout', 'HOOKFAN_DELIVERY_TIMEOUT', '1500ms', [], 'delivery.delivery_timeout', '1.5'),
    ('app', 'min-retry-delay', 'HOOKFAN_MIN_RETRY_DELAY', '1500ms', [], 'delivery.min_retry_delay', '1.5'),
    ('app', 'max-retry-delay', 'HOOKFAN_MAX_RETRY_DELAY', '1h', [], 'delivery.max_retry_delay', '3600.0'),
    ('app', 'max-retry-age', 'HOOKFAN_MAX_RETRY_AGE', '1500ms', [], 'delivery.max_retry_age', '1.5'),
    ('app', 'concurrency', 'HOOKFAN_CONCURRENCY', '7', [], 'delivery.concurrency', '7'),
    ('app', 'lease', 'HOOKFAN_LEASE', '25s', [], None, 'error'),
    ('app', 'delivery-batch', 'HOOKFAN_DELIVERY_BATCH', '7', [], 'delivery.batch', '7'),
    ('app', 'backend-concurrency', 'HOOKFAN_BACKEND_CONCURRENCY', '7', [], 'delivery.backend_concurrency', '7'),
    ('app', 'task-events', 'HOOKFAN_TASK_EVENTS', 'true', [], 'delivery.task_events', 'True'),
    ('app', 'metrics-addr', 'HOOKFAN_METRICS_ADDR', '127.0.0.1:9998', [], 'metrics_addr', "('127.0.0.1', 9998)"),
    ('app', 'health-addr', 'HOOKFAN_HEALTH_ADDR', '127.0.0.1:9998', [], 'health_addr', "('127.0.0.1', 9998)"),
    ('app', 'otel-endpoint', 'HOOKFAN_OTEL_ENDPOINT', 'collector:4317', [], 'otel.endpoint', "'collector:4317'"),
    ('app', 'otel-insecure', 'HOOKFAN_OTEL_INSECURE', 'true', [], 'otel.insecure', 'True'),
    ('app', 'otel-service-name', 'HOOKFAN_OTEL_SERVICE_NAME', 'svc', [], 'otel.service_name', "'svc'"),
    ('app', 'otel-tls-client-cert-path', 'HOOKFAN_OTEL_TLS_CLIENT_CERT_PATH', '/c.pem', [], 'otel.tls_client_cert_path', "'/c.pem'"),
    ('app', 'otel-tls-client-key-path', 'HOOKFAN_OTEL_TLS_CLIENT_KEY_PATH', '/k.pem', [], 'otel.tls_client_key_path', "'/k.pem'"),
    ('app', 'otel-tls-root-ca-path', 'HOOKFAN_OTEL_TLS_ROOT_CA_PATH', '/ca.pem', [], 'otel.tls_root_ca_path', "'/ca.pem'"),
    ('app', 'graceful-shutdown-timeout', 'HOOKFAN_GRACEFUL_SHUTDOWN_TIMEOUT', '1500ms', [], 'operator.graceful_shutdown_timeout', '1.5'),
    ('app', 'allow-unsafe-redis', 'HOOKFAN_ALLOW_UNSAFE_REDIS', 'true', [], 'redis.allow_unsafe', 'True'),
    ('worker', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('worker', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('worker', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('worker', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('worker', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('worker', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('worker', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('worker', 'delivery-timeout', 'HOOKFAN_DELIVERY_TIMEOUT', '1500ms', [], 'delivery.delivery_timeout', '1.5'),
    ('worker', 'min-retry-delay', 'HOOKFAN_MIN_RETRY_DELAY', '1500ms', [], 'delivery.min_retry_delay', '1.5'),
    ('worker', 'max-retry-delay', 'HOOKFAN_MAX_RETRY_DELAY', '1h', [], 'delivery.max_retry_delay', '3600.0'),
    ('worker', 'max-retry-age', 'HOOKFAN_MAX_RETRY_AGE', '1500ms', [], 'delivery.max_retry_age', '1.5'),
    ('worker', 'concurrency', 'HOOKFAN_CONCURRENCY', '7', [], 'delivery.concurrency', '7'),
    ('worker', 'lease', 'HOOKFAN_LEASE', '25s', [], None, 'error'),
    ('worker', 'delivery-batch', 'HOOKFAN_DELIVERY_BATCH', '7', [], 'delivery.batch', '7'),
    ('worker', 'backend-concurrency', 'HOOKFAN_BACKEND_CONCURRENCY', '7', [], 'delivery.backend_concurrency', '7'),
    ('worker', 'task-events', 'HOOKFAN_TASK_EVENTS', 'true', [], 'delivery.task_events', 'True'),
    ('worker', 'dead-letter-retention', 'HOOKFAN_DEAD_LETTER_RETENTION', '36h', [], 'delivery.dead_letter_retention', '129600.0'),
    ('worker', 'metrics-addr', 'HOOKFAN_METRICS_ADDR', '127.0.0.1:9998', [], 'metrics_addr', "('127.0.0.1', 9998)"),
    ('worker', 'health-addr', 'HOOKFAN_HEALTH_ADDR', '127.0.0.1:9998', [], 'health_addr', "('127.0.0.1', 9998)"),
    ('worker', 'otel-endpoint', 'HOOKFAN_OTEL_ENDPOINT', 'collector:4317', [], 'otel.endpoint', "'collector:4317'"),
    ('worker', 'otel-insecure', 'HOOKFAN_OTEL_INSECURE', 'true', [], 'otel.insecure', 'True'),
    ('worker', 'otel-service-name', 'HOOKFAN_OTEL_SERVICE_NAME', 'svc', [], 'otel.service_name', "'svc'"),
    ('worker', 'otel-tls-client-cert-path', 'HOOKFAN_OTEL_TLS_CLIENT_CERT_PATH', '/c.pem', [], 'otel.tls_client_cert_path', "'/c.pem'"),
    ('worker', 'otel-tls-client-key-path', 'HOOKFAN_OTEL_TLS_CLIENT_KEY_PATH', '/k.pem', [], 'otel.tls_client_key_path', "'/k.pem'"),
    ('worker', 'otel-tls-root-ca-path', 'HOOKFAN_OTEL_TLS_ROOT_CA_PATH', '/ca.pem', [], 'otel.tls_root_ca_path', "'/ca.pem'"),
    ('worker', 'graceful-shutdown-timeout', 'HOOKFAN_GRACEFUL_SHUTDOWN_TIMEOUT', '1500ms', [], 'operator.graceful_shutdown_timeout', '1.5'),
    ('worker', 'allow-unsafe-redis', 'HOOKFAN_ALLOW_UNSAFE_REDIS', 'true', [], 'redis.allow_unsafe', 'True'),
    ('operator', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('operator', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('operator', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('operator', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('operator', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('operator', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('operator', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('operator', 'routes-dir', 'HOOKFAN_ROUTES_DIR', '/srv/routes', [], 'operator.routes_dir', "'/srv/routes'"),
    ('operator', 'service-alias', 'HOOKFAN_SERVICE_ALIAS', 'svc=127.0.0.1:81', [], 'operator.service_aliases', "(('svc', '127.0.0.1:81'),)"),
    ('operator', 'poll-interval', 'HOOKFAN_POLL_INTERVAL', '1500ms', [], 'operator.poll_interval', '1.5'),
    ('operator', 'host-policy', 'HOOKFAN_HOST_POLICY', 'shared', [], 'operator.host_policy', "'shared'"),
    ('operator', 'kubeconfig', 'HOOKFAN_KUBECONFIG', '/k/config', [], 'operator.kubeconfig', "'/k/config'"),
    ('operator', 'insecure-kubeconfig-exec', 'HOOKFAN_INSECURE_KUBECONFIG_EXEC', 'true', [], 'operator.insecure_kubeconfig_exec', 'True'),
    ('operator', 'insecure-kubeconfig-tls', 'HOOKFAN_INSECURE_KUBECONFIG_TLS', 'true', [], 'operator.insecure_kubeconfig_tls', 'True'),
    ('operator', 'watch-all-namespaces', 'HOOKFAN_WATCH_ALL_NAMESPACES', 'false', [], 'operator.watch_all_namespaces', 'False'),
    ('operator', 'watch-label-selector', 'HOOKFAN_WATCH_LABEL_SELECTOR', 'a=b', [], 'operator.watch_label_selector', "'a=b'"),
    ('operator', 'kube-api-qps', 'HOOKFAN_KUBE_API_QPS', '2.5', [], 'operator.kube_api_qps', '2.5'),
    ('operator', 'kube-api-burst', 'HOOKFAN_KUBE_API_BURST', '7', [], 'operator.kube_api_burst', '7'),
    ('operator', 'concurrent', 'HOOKFAN_CONCURRENT', '7', [], 'operator.concurrent', '7'),
    ('operator', 'resync-period', 'HOOKFAN_RESYNC_PERIOD', '1500ms', [], 'operator.resync_period', '1.5'),
    ('operator', 'enable-leader-election', 'HOOKFAN_ENABLE_LEADER_ELECTION', 'true', [], 'operator.enable_leader_election', 'True'),
    ('operator', 'leader-election-lease-duration', 'HOOKFAN_LEADER_ELECTION_LEASE_DURATION', '40s', [], 'operator.leader_election_lease_duration', '40.0'),
    ('operator', 'leader-election-renew-deadline', 'HOOKFAN_LEADER_ELECTION_RENEW_DEADLINE', '20s', [], 'operator.leader_election_renew_deadline', '20.0'),
    ('operator', 'leader-election-retry-period', 'HOOKFAN_LEADER_ELECTION_RETRY_PERIOD', '2s', [], 'operator.leader_election_retry_period', '2.0'),
    ('operator', 'leader-election-release-on-cancel', 'HOOKFAN_LEADER_ELECTION_RELEASE_ON_CANCEL', 'false', [], 'operator.leader_election_release_on_cancel', 'False'),
    ('operator', 'leader-election-id', 'HOOKFAN_LEADER_ELECTION_ID', 'my-lease', [], 'operator.leader_election_id', "'my-lease'"),
    ('operator', 'status-interval', 'HOOKFAN_STATUS_INTERVAL', '1500ms', [], 'operator.status_interval', '1.5'),
    ('operator', 'delivery-timeout', 'HOOKFAN_DELIVERY_TIMEOUT', '1500ms', [], 'delivery.delivery_timeout', '1.5'),
    ('operator', 'min-retry-delay', 'HOOKFAN_MIN_RETRY_DELAY', '1500ms', [], 'delivery.min_retry_delay', '1.5'),
    ('operator', 'max-retry-delay', 'HOOKFAN_MAX_RETRY_DELAY', '1h', [], 'delivery.max_retry_delay', '3600.0'),
    ('operator', 'max-retry-age', 'HOOKFAN_MAX_RETRY_AGE', '1500ms', [], 'delivery.max_retry_age', '1.5'),
    ('operator', 'concurrency', 'HOOKFAN_CONCURRENCY', '7', [], 'delivery.concurrency', '7'),
    ('operator', 'lease', 'HOOKFAN_LEASE', '25s', [], None, 'error'),
    ('operator', 'delivery-batch', 'HOOKFAN_DELIVERY_BATCH', '7', [], 'delivery.batch', '7'),
    ('operator', 'backend-concurrency', 'HOOKFAN_BACKEND_CONCURRENCY', '7', [], 'delivery.backend_concurrency', '7'),
    ('operator', 'task-events', 'HOOKFAN_TASK_EVENTS', 'true', [], 'delivery.task_events', 'True'),
    ('operator', 'metrics-addr', 'HOOKFAN_METRICS_ADDR', '127.0.0.1:9998', [], 'metrics_addr', "('127.0.0.1', 9998)"),
    ('operator', 'health-addr', 'HOOKFAN_HEALTH_ADDR', '127.0.0.1:9998', [], 'health_addr', "('127.0.0.1', 9998)"),
    ('operator', 'otel-endpoint', 'HOOKFAN_OTEL_ENDPOINT', 'collector:4317', [], 'otel.endpoint', "'collector:4317'"),
    ('operator', 'otel-insecure', 'HOOKFAN_OTEL_INSECURE', 'true', [], 'otel.insecure', 'True'),
    ('operator', 'otel-service-name', 'HOOKFAN_OTEL_SERVICE_NAME', 'svc', [], 'otel.service_name', "'svc'"),
    ('operator', 'otel-tls-client-cert-path', 'HOOKFAN_OTEL_TLS_CLIENT_CERT_PATH', '/c.pem', [], 'otel.tls_client_cert_path', "'/c.pem'"),
    ('operator', 'otel-tls-client-key-path', 'HOOKFAN_OTEL_TLS_CLIENT_KEY_PATH', '/k.pem', [], 'otel.tls_client_key_path', "'/k.pem'"),
    ('operator', 'otel-tls-root-ca-path', 'HOOKFAN_OTEL_TLS_ROOT_CA_PATH', '/ca.pem', [], 'otel.tls_root_ca_path', "'/ca.pem'"),
    ('operator', 'graceful-shutdown-timeout', 'HOOKFAN_GRACEFUL_SHUTDOWN_TIMEOUT', '1500ms', [], 'operator.graceful_shutdown_timeout', '1.5'),
    ('routes', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('routes', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('routes', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('routes', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('routes', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('routes', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('routes', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('deadletters list', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('deadletters list', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('deadletters list', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('deadletters list', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('deadletters list', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('deadletters list', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('deadletters list', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('echo --port 9', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('echo --port 9', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('echo --port 9', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('echo --port 9', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('echo --port 9', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('echo --port 9', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('echo --port 9', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('dev', 'redis-url', 'HOOKFAN_REDIS_URL', 'redis://example:6390/3', [], 'redis.url', "'redis://example:6390/3'"),
    ('dev', 'redis-password-file', 'HOOKFAN_REDIS_PASSWORD_FILE', '{file}', [], 'redis.password_file', "'{file}'"),
    ('dev', 'redis-tls-ca-file', 'HOOKFAN_REDIS_TLS_CA_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0'], 'redis.tls_ca_file', "'{file}'"),
    ('dev', 'redis-tls-cert-file', 'HOOKFAN_REDIS_TLS_CERT_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-key-file', '{file}'], 'redis.tls_cert_file', "'{file}'"),
    ('dev', 'redis-tls-key-file', 'HOOKFAN_REDIS_TLS_KEY_FILE', '{file}', ['--redis-url', 'rediss://h:6380/0', '--redis-tls-cert-file', '{file}'], 'redis.tls_key_file', "'{file}'"),
    ('dev', 'log-level', 'HOOKFAN_LOG_LEVEL', 'debug', [], 'log.level', "'debug'"),
    ('dev', 'log-encoding', 'HOOKFAN_LOG_ENCODING', 'console', [], 'log.encoding', "'console'"),
    ('dev', 'http-addr', 'HOOKFAN_HTTP_ADDR', '127.0.0.1:9999', [], 'intake.http_addr', "('127.0.0.1', 9999)"),
]


def setting(settings: Any, target: str) -> Any:
    for part in target.split("."):
        settings = getattr(settings, part)
    return settings


def argv(row: tuple[Any, ...], a_file: str, form: str) -> list[str]:
    command, flag, _, value, extra, _, _ = row
    given = [f"--{flag}={value}"] if form == "equals" else [f"--{flag}", value]
    return [a.replace("{file}", a_file) for a in [*command.split(), *extra, *given]]


ROWS = [r for r in OLD_FLAGS if r[6] != "error"]
IDS = [f"{r[0].split()[0]}:{r[1]}" for r in ROWS]


@pytest.mark.parametrize("form", ["space", "equals"])
@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_every_old_flag_still_sets_its_setting(row, form, a_file):
    resolved = cli.resolve(argv(row, a_file, form), environ={})
    assert repr(setting(resolved.settings, row[5])) == row[6].replace("{file}", a_file)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_every_old_environment_variable_still_sets_its_setting(row, a_file):
    command, _, env, value, extra, target, expected = row
    resolved = cli.resolve([a.replace("{file}", a_file) for a in [*command.split(), *extra]],
                           environ={env: value.replace("{file}", a_file)})
    assert repr(setting(resolved.settings, target)) == expected.replace("{file}", a_file)


@pytest.mark.parametrize("row", [r for r in OLD_FLAGS if r[6] == "error"],
                         ids=lambda r: f"{r[0].split()[0]}:{r[1]}")
def test_a_removed_flag_stops_with_exit_2_naming_it(row, a_file, capsys, monkeypatch):
    assert cli.main(argv(row, a_file, "space")) == 2
    err = capsys.readouterr().err
    assert f"--{row[1]}" in err and "removed" in err and "Traceback" not in err
    monkeypatch.setenv(row[2], row[3])
    assert cli.main(row[0].split()) == 2
    err = capsys.readouterr().err
    assert row[2] in err and "removed" in err and "Traceback" not in err
