"""What QA writes and runs: the command line, and (later) YAML tap scenarios.

The only package that wires ``emv``, ``hce`` and ``terminal`` together.
"""
