"""Benchmarks: each writes bench-results/<name>.json via `common.write_result`; BENCHMARKS.md is rendered from them.
`registry.BENCHMARKS` lists them all (subcommand, report order, demo baselines and captions)."""
