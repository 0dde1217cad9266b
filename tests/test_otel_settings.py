"""provider/observability/otel_settings.py: otel_config and provider config as a host means them."""

from __future__ import annotations

from provider.observability.otel_settings import otel_settings, signal_endpoint


def test_nothing_is_exported_by_default() -> None:
    assert not otel_settings(None, {}).enabled
    assert not otel_settings({"enable_observability": False}, {}).enabled


def test_each_signal_defaults_to_enable_observability() -> None:
    settings = otel_settings({"enable_observability": True, "enable_logs": False}, {})
    assert (settings.traces, settings.metrics, settings.logs) == (True, True, False)
    only_traces = otel_settings({"enable_traces": True}, {})
    assert (only_traces.traces, only_traces.metrics) == (True, False)


def test_endpoints_resolve_as_the_host_sdk_does() -> None:
    http = otel_settings({"enable_observability": True}, {})
    assert http.endpoints == {
        s: f"http://127.0.0.1:4318/v1/{s}" for s in ("traces", "metrics", "logs")
    }
    grpc = otel_settings({"enable_observability": True, "protocol": "Grpc"}, {})
    assert grpc.protocol == "grpc" and set(grpc.endpoints.values()) == {"http://127.0.0.1:4317"}
    shared = otel_settings(
        {"enable_observability": True, "observability_endpoint": "http://collector:4318",
         "metrics_endpoint": "http://metrics:9000/custom"}, {}
    )  # fmt: skip
    assert shared.endpoints["traces"] == "http://collector:4318/v1/traces"
    assert shared.endpoints["metrics"] == "http://metrics:9000/custom"  # its own, as given
    assert signal_endpoint("http", "http://c:4318/", "logs") == "http://c:4318/v1/logs"
    assert signal_endpoint("http", "http://c:4318/otlp", "logs") == "http://c:4318/otlp"
    assert signal_endpoint("grpc", "https://c:4317/anything", "traces") == "https://c:4317"


def test_provider_config_overrides_case_insensitively() -> None:
    settings = otel_settings(
        {"enable_traces": True, "observability_endpoint": "http://host-side:4318",
         "traces_sampler": "always_on"},
        {"otel_exporter_otlp_endpoint": "http://mine:4318", "OTEL_TRACES_SAMPLER": "TraceIdRatio",
         "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://l/x"},
    )  # fmt: skip
    assert settings.endpoints["traces"] == "http://mine:4318/v1/traces"
    assert settings.endpoints["logs"] == "http://l/x"
    assert (settings.sampler, settings.sampler_arg) == ("traceidratio", "0.25")


def test_other_fields() -> None:
    settings = otel_settings(
        {"enable_observability": "true", "protocol": "bogus", "additional_ca_paths": ["/ca.pem"],
         "trace_level": "DEBUG", "max_batch_queue_size": "0", "concurrent_exports": 4}, {}
    )  # fmt: skip
    assert settings.protocol == "http" and settings.additional_ca_paths == ("/ca.pem",)
    assert settings.trace_level == "debug" and settings.max_batch_queue_size is None
    assert settings.concurrent_exports == 4 and settings.sampler == "parentbased_always_on"


def test_a_host_tracing_at_warn_or_error_gets_none_of_our_info_spans() -> None:
    for level, traced in (("trace", True), ("info", True), ("WARN", False), ("error", False)):
        settings = otel_settings({"enable_observability": True, "trace_level": level}, {})
        assert settings.traces is traced and settings.metrics  # metrics are not levelled
