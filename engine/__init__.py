"""shmflow's engine: dataflow definition, operators, connectors and runtime.

``engine`` depends on ``shm`` and ``recovery``; they never import ``engine``.
"""
