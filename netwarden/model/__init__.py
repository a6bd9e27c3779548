"""The pure model: names, identity, labels, declarations, the policy model, NetworkPolicy semantics and the wire types.

Plain data in and out, no I/O; every other layer builds on it (import-linter contract `pure-model`).
"""
