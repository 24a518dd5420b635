"""The client subcommands of `reelscan`; each module adds its parsers and handlers (handler(ns) -> exit code)."""
