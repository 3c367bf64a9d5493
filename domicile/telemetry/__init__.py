"""Telemetry: what the server tells its operators.

- `metrics`: the Prometheus metrics and the registry `/metrics` reads;
- `tracing`: OpenTelemetry set-up (off unless the OTEL_* environment asks) and spans;
- `logs`: the server log as text or JSON lines, with trace ids;
- `access`: per-request metrics and access log lines for gRPC and HTTP;
- `security`: the security context on spans, and the request's trace id;
- `decisions`: decision counters and their description on the engine's span;
- `store`: the GraphStore wrapper that measures every store call.

The operator endpoints themselves live in `domicile.ops`. docs/operations.md is the reference.
"""
