"""OTLP exporters for one signal, over http/protobuf or grpc as the host's `otel_config` says,
trusting its `additional_ca_paths` on top of the usual roots (imported only when that signal is
on)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provider.observability.otel_settings import OtelSettings

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def ca_certificates(paths: tuple[str, ...]) -> bytes | None:
    """The host's `additional_ca_paths` added to the usual roots (certifi's, as requests and
    the Rust host's webpki roots have them): a set of only the extra CAs would distrust every
    public collector. An unreadable file is logged and left out."""
    if not paths:
        return None
    import certifi

    parts = [Path(certifi.where()).read_bytes()]
    for path in paths:
        try:
            parts.append(Path(path).read_bytes())
        except OSError as exc:
            log.warning("an additional CA cannot be read", extra={"path": path, "error": str(exc)})
    return b"\n".join(parts)


def ca_bundle(paths: tuple[str, ...]) -> str | None:
    """`ca_certificates` as a file (the HTTP exporter takes a path): named by its content in
    the temporary directory and written once, atomically, so restarts reuse it and a SIGKILL
    leaves nothing new behind."""
    certificates = ca_certificates(paths)
    if certificates is None:
        return None
    digest = hashlib.sha256(certificates).hexdigest()[:20]
    path = Path(tempfile.gettempdir(), f"sqldb-postgres-ca-{digest}.pem")
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(certificates)
        os.replace(partial, path)
    return str(path)


@functools.cache
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


@functools.cache
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
    extra_cas = tuple(settings.additional_ca_paths)
    if settings.protocol == "grpc":
        roots = ca_certificates(extra_cas)
        if roots is None:
            return exporter_class(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        import grpc  # type: ignore[import-untyped]

        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return exporter_class(endpoint=endpoint, credentials=credentials)
    bundle = ca_bundle(extra_cas)
    if bundle:
        return exporter_class(endpoint=endpoint, certificate_file=bundle)
    return exporter_class(endpoint=endpoint)
