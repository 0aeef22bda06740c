"""relayguard."""
