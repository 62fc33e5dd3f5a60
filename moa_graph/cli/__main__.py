"""``python -m moa_graph.cli``: the ``moa`` command."""

from moa_graph.cli.app import main

main()
