"""shmflow benchmarks (pytest-benchmark suites plus standalone table scripts)."""
