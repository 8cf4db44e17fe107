"""Test doubles for what cannot run on this machine without root or guests (see node.py)."""
