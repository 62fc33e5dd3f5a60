"""What a mixture is: its agents, strategy and call settings, read from presets and files.

``model`` holds the validated config (``MoAConfig``, ``AgentSpec``, ``EarlyExit``);
``files`` reads and writes YAML, TOML and JSON configs; ``presets`` holds the bundled
ones; ``resolve`` turns a preset name, a file or a mapping into a config, the one place
that does.
"""
