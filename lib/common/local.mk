lib_libaihpc_la_SOURCES += \
	lib/common/child_process.cpp lib/common/child_process.hpp \
	lib/common/process.cpp lib/common/process.hpp \
	lib/common/spawn.cpp lib/common/spawn.hpp \
	lib/common/error.cpp lib/common/error.hpp \
	lib/common/fd.hpp \
	lib/common/json.cpp lib/common/json.hpp \
	lib/common/node_helper.cpp lib/common/node_helper.hpp \
	lib/common/paths.cpp lib/common/paths.hpp \
	lib/common/saturating.hpp \
	lib/common/text.cpp lib/common/text.hpp \
	lib/common/user_process.cpp lib/common/user_process.hpp
EXTRA_DIST += lib/common/README
