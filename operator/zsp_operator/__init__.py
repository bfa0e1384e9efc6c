"""zsp-operator: zero standing privilege for non-human identities on Kubernetes."""

__version__ = "0.1.0"
