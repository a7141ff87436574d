"""hub-pgen tests (a package, so test modules can share helpers: ``from .contract import ...``)."""
