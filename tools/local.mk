# The tools link lib/ statically (a convenience library), so the build tree holds real
# executables, not libtool wrappers.
tool_libs = lib/libaihpc.la
