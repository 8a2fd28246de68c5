# aihpc(8) is assembled from its head, one section per capability (staging, binding,
# containers) and its tail.
aihpc_8_sections = man/aihpc-8-stage.roff man/aihpc-8-bind.roff man/aihpc-8-container.roff
man_MANS = man/aihpc.8
man/aihpc.8: man/aihpc.8.head man/aihpc.8.tail $(aihpc_8_sections)
	$(AM_V_GEN)mkdir -p man && \
	for part in man/aihpc.8.head $(aihpc_8_sections) man/aihpc.8.tail; do \
	    cat $(srcdir)/$$part; \
	done | sed 's/@VERSION@/$(PACKAGE_VERSION)/' >$@
CLEANFILES += man/aihpc.8
EXTRA_DIST += man/aihpc.8.head man/aihpc.8.tail $(aihpc_8_sections)
