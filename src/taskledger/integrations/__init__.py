"""Adapters that turn other systems' records into taskledger records, through the client."""
