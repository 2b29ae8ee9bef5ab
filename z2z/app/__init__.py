"""The application: wires the core to the adapters (gateway), CLI, config, state, status."""
