EXTRA_DIST += contrib/deps contrib/test-all contrib/demo contrib/minicluster \
	contrib/plugstack.conf.example contrib/examples contrib/packaging \
	tests/integration tests/fuzz/run tests/fuzz/fuzz_config.cpp
