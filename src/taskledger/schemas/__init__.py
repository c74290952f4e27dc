"""Pydantic request and response models per resource, split by role (Create, Update, Read, Page).

Imports nothing from the server side, so the HTTP client can share them.
"""
