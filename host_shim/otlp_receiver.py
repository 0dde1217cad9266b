"""Real OTLP receivers on loopback, over HTTP (protobuf bodies) and over gRPC: what exporters
send is decoded with the definitions from opentelemetry-proto and kept (for the tests,
`bench/tracing_bench` and the shim's `--show-traces`)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[Any] = []  # opentelemetry.proto.trace.v1.Span
        self.resources: list[Any] = []  # the spans' resources
        self.services: dict[bytes, str] = {}  # span id → its resource's service.name
        self.metric_requests: list[Any] = []  # ExportMetricsServiceRequest, in arrival order
        self.requests = 0

    def add_traces(self, request: Any) -> None:
        with self.lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                self.resources.append(resource_spans.resource)
                service = str(attributes(resource_spans.resource).get("service.name", ""))
                for scope in resource_spans.scope_spans:
                    self.spans.extend(scope.spans)
                    self.services.update((span.span_id, service) for span in scope.spans)

    def add_metrics(self, request: Any) -> None:
        with self.lock:
            self.requests += 1
            self.metric_requests.append(request)

    def span_list(self) -> list[Any]:
        with self.lock:
            return list(self.spans)

    def latest_metrics(self) -> dict[str, Any]:
        """Metric name → the last export's `Metric` (cumulative: the last one holds all)."""
        with self.lock:
            requests = list(self.metric_requests)
        found: dict[str, Any] = {}
        for request in requests:
            for resource_metrics in request.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        found[metric.name] = metric
        return found


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
            if self.path == "/v1/traces":
                received.add_traces(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            elif self.path == "/v1/metrics":
                request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                received.add_metrics(request)
            self.send_response(200 if self.path in ("/v1/traces", "/v1/metrics") else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
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


@contextmanager
def running_otlp_grpc_receiver() -> Iterator[tuple[str, Received]]:
    """(endpoint URL, what arrived): the OTLP trace and metrics services over gRPC."""
    import grpc  # type: ignore[import-untyped]

    received = Received()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.add_traces(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.add_metrics(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(0)
