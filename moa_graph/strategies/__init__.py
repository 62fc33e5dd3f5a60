"""How the aggregator turns proposals into one answer, and the text the agents see.

``aggregation`` is the table of strategies; ``agreement`` finds stated answers and the
most agreed proposal; ``code_check`` runs code proposals on the prompt's examples;
``prompts`` puts references before an agent; ``tool_text`` tells proposers of bound tools.
"""
