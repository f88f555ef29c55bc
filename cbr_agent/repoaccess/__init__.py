"""The configured repository: its password and opening it from Settings (used by the CLI, the agent and
backup runs)."""
