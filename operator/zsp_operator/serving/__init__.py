"""Serving certificates for the admission webhooks: a private CA, or one the cluster provides."""
