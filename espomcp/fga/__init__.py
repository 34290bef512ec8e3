"""Fine-grained authorization: an OpenFGA-compatible embedded engine and pluggable backends."""
