"""The shim builds `otel_config` from the wasmCloud host's own flags and variables (sans-IO)."""

from __future__ import annotations

import argparse

from host_shim.observability import add_arguments, otel_config


def flags(*argv: str) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(list(argv)))


def test_the_hosts_environment_variables() -> None:
    environment = {
        "WASMCLOUD_OBSERVABILITY_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "WASMCLOUD_OBSERVABILITY_PROTOCOL": "grpc",
        "WASMCLOUD_TLS_CA_PATH": "/a.pem, /b.pem",
        "WASMCLOUD_TRACE_LEVEL": "debug",
        "UNRELATED": "x",
    }
    assert otel_config(flags(), environment) == {
        "enable_observability": True, "observability_endpoint": "http://collector:4318",
        "protocol": "Grpc", "additional_ca_paths": ["/a.pem", "/b.pem"], "trace_level": "debug",
    }  # fmt: skip


def test_flags_win_and_per_signal_switches_take_an_optional_value() -> None:
    environment = {"WASMCLOUD_TRACES_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://e"}
    config = otel_config(
        flags(
            "--enable-traces", "--enable-metrics=false", "--override-traces-endpoint", "http://t"
        ),
        environment,
    )
    assert config == {
        "enable_traces": True, "enable_metrics": False,
        "observability_endpoint": "http://e", "traces_endpoint": "http://t",
    }  # fmt: skip


def test_an_endpoint_alone_turns_observability_on_and_nothing_leaves_it_off() -> None:
    assert otel_config(flags("--override-observability-endpoint", "http://e"), {}) == {
        "observability_endpoint": "http://e", "enable_observability": True,
    }  # fmt: skip
    assert otel_config(flags(), {}) == {"enable_observability": False}
