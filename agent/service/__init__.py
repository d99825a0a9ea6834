"""Running as a service: the daemon's life cycle, systemd, one instance per state, the local endpoint."""
