"""ferry: checkpoint running Podman containers with CRIU into object storage and restore them."""

__version__ = "0.1.0"
