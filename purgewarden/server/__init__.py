"""Server wiring: the MCP app and its transports."""
