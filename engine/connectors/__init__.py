"""Ready-made sources and sinks.

- `engine.connectors.files`: read lines or CSV rows from files and directories, write
  lines to files and directories, with exactly-once resume.
- `engine.connectors.stdio`: print items to standard output.

To write a connector of your own, subclass the interfaces in `engine.inputs` and
`engine.outputs`.
"""

__all__: list[str] = []
