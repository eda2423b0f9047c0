"""Sans-IO per-connection state: TCP reassembly, the connection's story, DNS answers."""
