"""Tests of ``deepgemm.bench``: suites, providers, the measuring loop, the report and the CLI."""
