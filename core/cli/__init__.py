"""`python -m core`: the argument parser and one module per command.

May import: everything in core.
"""
