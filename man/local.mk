# Every page carries the configured version: its source (man/*.in, or the parts of
# aihpc(8)) has the placeholder VERSION between two @, and the built page has
# $(PACKAGE_VERSION) there. The bracket keeps config.status, which fills in every such
# placeholder of this Makefile, from turning the pattern into the version itself.
man_set_version = sed 's/@[V]ERSION@/$(PACKAGE_VERSION)/'

# The tools' pages, one source each; a new version (in the Makefile) makes them again.
man1_pages = man/aihpc-stage.1 man/aihpc-bind.1 man/aihpc-sweep.1 man/aihpc-collect.1
man_MANS = $(man1_pages)
man/aihpc-stage.1: man/aihpc-stage.1.in Makefile
	$(AM_V_GEN)mkdir -p man && $(man_set_version) $(srcdir)/man/aihpc-stage.1.in >$@
man/aihpc-bind.1: man/aihpc-bind.1.in Makefile
	$(AM_V_GEN)mkdir -p man && $(man_set_version) $(srcdir)/man/aihpc-bind.1.in >$@
man/aihpc-sweep.1: man/aihpc-sweep.1.in Makefile
	$(AM_V_GEN)mkdir -p man && $(man_set_version) $(srcdir)/man/aihpc-sweep.1.in >$@
man/aihpc-collect.1: man/aihpc-collect.1.in Makefile
	$(AM_V_GEN)mkdir -p man && $(man_set_version) $(srcdir)/man/aihpc-collect.1.in >$@
CLEANFILES += $(man1_pages)
EXTRA_DIST += man/aihpc-stage.1.in man/aihpc-bind.1.in man/aihpc-sweep.1.in man/aihpc-collect.1.in

# aihpc(8) is assembled from its head, one section per capability (staging, binding,
# containers) and its tail.
aihpc_8_sections = man/aihpc-8-stage.roff man/aihpc-8-bind.roff man/aihpc-8-container.roff
man_MANS += man/aihpc.8
man/aihpc.8: Makefile man/aihpc.8.head man/aihpc.8.tail $(aihpc_8_sections)
	$(AM_V_GEN)mkdir -p man && \
	for part in man/aihpc.8.head $(aihpc_8_sections) man/aihpc.8.tail; do \
	    cat $(srcdir)/$$part; \
	done | $(man_set_version) >$@
CLEANFILES += man/aihpc.8
EXTRA_DIST += man/aihpc.8.head man/aihpc.8.tail $(aihpc_8_sections)

# mandoc's lint finds nothing to warn about in any page, and each says the version.
TESTS += tests/man-lint.sh
EXTRA_DIST += tests/man-lint.sh
AM_TESTS_ENVIRONMENT += man_pages='$(man_MANS)'; package_version='$(PACKAGE_VERSION)'; export man_pages package_version;
