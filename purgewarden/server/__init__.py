"""Server wiring: config, confirmation, errors, audit, transports."""
