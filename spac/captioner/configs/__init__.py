"""Shipped captioner configs (package data: ``*.json`` here is installed with the package)."""
