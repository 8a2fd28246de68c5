# Integration tests.
EXTRA_DIST += tests/integration/33-mpi4py-container.sh
