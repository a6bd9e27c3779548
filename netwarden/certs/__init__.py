"""Certificates for netwarden's TLS endpoints: make them, store them, check and rotate them."""
