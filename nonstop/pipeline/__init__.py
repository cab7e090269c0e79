"""The event pipeline: from an envelope to the ledger, the ack and Bolt, and back to "finished"."""
