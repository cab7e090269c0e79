"""The network: one TLS context and proxy decision (`network`), and the one home of retry policy (`retry`)."""
