EXTRA_DIST += bench/README bench/run-all
