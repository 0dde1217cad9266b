"""A real OTLP/HTTP receiver on loopback for the tests: decodes what exporters POST with the
protobuf definitions from opentelemetry-proto and keeps it for assertions."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[Any] = []  # opentelemetry.proto.trace.v1.Span, with its resource
        self.resources: list[Any] = []
        self.metrics: list[Any] = []
        self.requests = 0

    def span_list(self) -> list[Any]:
        with self.lock:
            return list(self.spans)


def attributes(item: Any) -> dict[str, Any]:
    """An OTLP attribute list as a dict of plain values."""
    found: dict[str, Any] = {}
    for attribute in item.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        found[attribute.key] = getattr(value, kind) if kind else None
    return found


@contextmanager
def running_otlp_receiver() -> Iterator[tuple[str, Received]]:
    """(base URL, what arrived): POST /v1/traces and /v1/metrics, protobuf bodies."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with received.lock:
                received.requests += 1
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    for resource_spans in request.resource_spans:
                        received.resources.append(resource_spans.resource)
                        for scope in resource_spans.scope_spans:
                            received.spans.extend(scope.spans)
                elif self.path == "/v1/metrics":
                    metrics = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    received.metrics.append(metrics)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
