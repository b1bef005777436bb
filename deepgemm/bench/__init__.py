"""The side-by-side benchmark: deepgemm against cuBLAS on the DeepSeek-V3 shape suites.

Run ``python -m deepgemm.bench --help``. ``suites`` holds the shape suites, ``providers`` the
implementations compared, ``runner`` the measuring loop and ``report`` the arithmetic and output.
"""
