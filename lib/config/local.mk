lib_libaihpc_la_SOURCES += \
	lib/config/site_config.cpp lib/config/site_config.hpp \
	lib/config/user_options.cpp lib/config/user_options.hpp
EXTRA_DIST += lib/config/README
