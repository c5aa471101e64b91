"""The checkpoint archive format: pure code working on byte streams, no host side effects."""
