"""One module per service: the MCP tools, built on clients/ and server/."""
