"""`relayguard serve`: a small token-protected dashboard over the state `watch` keeps."""
