"""Example flows shipped with shmflow (runnable with ``python -m engine.examples.NAME``)."""
