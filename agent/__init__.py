"""The duplex model layer: the session contract, the embedded engine and remote adapters."""
