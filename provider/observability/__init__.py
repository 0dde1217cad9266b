"""Traces and metrics over OTLP as the host asks, and what a span may say."""
