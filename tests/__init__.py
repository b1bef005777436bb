"""deepgemm tests, one folder per layer of the package; ``conftest.py`` owns the ``gpu`` marker."""
