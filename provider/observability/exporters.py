"""OTLP exporters for one signal, over http/protobuf or grpc as the host's `otel_config` says,
trusting its `additional_ca_paths` too (imported only when that signal is on)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provider.observability.otel_settings import OtelSettings


def ca_bundle(paths: Sequence[str]) -> str | None:
    """The host's `additional_ca_paths` as one PEM file (the exporters take one)."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0]
    bundle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)  # noqa: SIM115
    with bundle:
        for path in paths:
            with contextlib.suppress(OSError):
                bundle.write(Path(path).read_text() + "\n")
    return bundle.name


def _grpc_span_exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from provider.observability.otlp_spans import Unencodable, export_request

    class CompactGrpcSpanExporter(OTLPSpanExporter):
        """The request parsed (in C) from `otlp_spans`' bytes, not built object by object."""

        def _translate_data(self, data: Sequence[Any]) -> Any:
            try:
                return ExportTraceServiceRequest.FromString(export_request(data))
            except Unencodable:
                return super()._translate_data(data)

    return CompactGrpcSpanExporter


def _http_span_exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from provider.observability.otlp_spans import Unencodable, export_request

    class CompactHttpSpanExporter(OTLPSpanExporter):
        """The library's exporter, posting `otlp_spans`' bytes; whatever that cannot encode,
        or an exporter without the client this relies on, takes the library's own path."""

        def export(self, spans: Sequence[Any]) -> Any:
            client = getattr(self, "_client", None)
            if self._shutdown or not hasattr(client, "export"):
                return super().export(spans)
            try:
                data = export_request(spans)
            except Unencodable:
                return super().export(spans)
            limit = getattr(self, "_max_request_size", 0)
            if limit and len(data) > limit:
                return super().export(spans)  # the library drops it, and says so
            result = client.export(data)  # type: ignore[union-attr]
            return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

    return CompactHttpSpanExporter


def _exporter_class(protocol: str, signal: str) -> Any:
    # Plain imports, not importlib: PyInstaller finds what the executable needs by reading them.
    if protocol == "grpc" and signal == "traces":
        return _grpc_span_exporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter
    if signal == "traces":
        return _http_span_exporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter


def otlp_exporter(settings: OtelSettings, signal: str) -> Any:
    """The exporter of `signal` ("traces" or "metrics") to its resolved endpoint."""
    exporter_class = _exporter_class(settings.protocol, signal)
    endpoint = settings.endpoints[signal]
    ca = ca_bundle(settings.additional_ca_paths)
    if settings.protocol == "grpc":
        if ca is None:
            return exporter_class(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        import grpc  # type: ignore[import-untyped]

        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
        return exporter_class(endpoint=endpoint, credentials=credentials)
    if ca:
        return exporter_class(endpoint=endpoint, certificate_file=ca)
    return exporter_class(endpoint=endpoint)
