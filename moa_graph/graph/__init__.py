"""The MoA graph: its state, the plan of each agent slot, the nodes and their wiring.

``state`` is the shared state and its events; ``plan`` and ``planner`` work out what each
slot does in a run; ``clients`` resolves models; ``nodes`` is one agent's step;
``early_exit`` decides whether a stage ends the run; ``build`` wires the graph. Nothing
here reads presets or files: it takes a config.
"""
