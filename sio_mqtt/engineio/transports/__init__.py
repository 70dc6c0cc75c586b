"""The only code that touches sockets: HTTP long-polling and websocket."""
