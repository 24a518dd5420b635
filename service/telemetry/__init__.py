"""What the server tells its operators: an injected observer (events.py) that the engine, scanner, stores and API
call at the events that matter, with two implementations composed at start-up: structured logs (logs.py) and
Prometheus metrics (metrics.py).

The domain code never imports a metrics library or decides what is logged: it calls the `Telemetry` it was given
(Temporal injects its MetricMeter the same way). The base class does nothing, so engines built without one (tests,
benchmarks) pay a method call per event and nothing else. This package's modules import nothing heavy at import
time, so config.py can use logs.parse_log_levels.
"""
