"""provider/observability/otel_settings.py: otel_config and provider config as a host means them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_additional_cas_are_added_to_the_usual_roots(tmp_path: Any, caplog: Any) -> None:
    import certifi

    from provider.observability.exporters import ca_bundle

    extra = tmp_path / "private-ca.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nprivate\n-----END CERTIFICATE-----\n")
    bundle = Path(ca_bundle((str(extra), str(tmp_path / "missing.pem"))) or "").read_text()
    assert bundle.startswith(Path(certifi.where()).read_text())  # public collectors still work
    assert "private" in bundle
    said = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert said and said[0].path.endswith("missing.pem")  # said, not silently skipped
    assert ca_bundle(()) is None


def test_endpoints_are_logged_without_credentials() -> None:
    from provider.observability.otel_settings import loggable

    assert loggable("https://user:key@otlp.example:4318/v1/traces?api-key=s3") == (
        "https://otlp.example:4318"
    )
    assert loggable("not a url") == "(unparsable endpoint)"


def test_a_bad_sampler_argument_is_ignored_not_fatal() -> None:
    from opentelemetry.sdk.trace import sampling

    from provider.observability.tracing import Tracing

    for sampler, argument in (("parentbased_always_on", "5"), ("traceidratio", "-1"),
                              ("parentbased_traceidratio", "half")):  # fmt: skip
        config = {"enable_traces": True, "traces_sampler": sampler, "traces_sampler_arg": argument,
                  "traces_endpoint": "http://127.0.0.1:9/v1/traces"}  # fmt: skip
        settings = otel_settings(config, {})
        tracing = Tracing(settings)
        try:
            assert tracing.tracer is not None
            chosen = tracing._provider.sampler
            # The sampler asked for, with the bad argument read as 1.0 (sample everything).
            assert isinstance(chosen, sampling.ParentBased) == sampler.startswith("parentbased_")
            root = chosen._root if isinstance(chosen, sampling.ParentBased) else chosen
            if sampler.endswith("always_on"):
                assert root is sampling.ALWAYS_ON
            else:
                assert isinstance(root, sampling.TraceIdRatioBased) and root.rate == 1.0
        finally:
            tracing.shutdown(0.1)
