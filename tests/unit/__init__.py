"""A package so unit and integration test modules may share a basename (test_registry.py).

tests/integration stays a plain folder: its modules import helpers as top-level modules.
"""
