"""The 95598 hotline application: configuration, wiring, storage, services and the CLI."""
