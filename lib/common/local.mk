lib_libaihpc_la_SOURCES += \
	lib/common/error.cpp lib/common/error.hpp \
	lib/common/fd.hpp \
	lib/common/text.cpp lib/common/text.hpp
EXTRA_DIST += lib/common/README
