# GNU make rules that build the libFuzzer targets with clang, apart from the g++ build:
# lib/ is compiled again under FUZZ_BUILD with coverage and sanitizers, so neither
# build touches the other's objects. tests/fuzz/run calls it; by hand:
#   make -f tests/fuzz/fuzz.mk srcdir=SRC builddir=BUILD FUZZ_BUILD=DIR
srcdir ?= .
builddir ?= .
FUZZ_BUILD ?= $(builddir)/tests/fuzz/build
CLANGXX ?= clang++
PKG_CONFIG ?= pkg-config

packages := json-c libarchive libxxhash hwloc numa
sanitize := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
cxxflags := -std=c++20 -g -O1 -Wall -Wextra -pthread $(sanitize)
# config.h comes from the configured build tree.
cppflags := -I$(srcdir)/lib -I$(builddir) $(shell $(PKG_CONFIG) --cflags $(packages))
libs := $(shell $(PKG_CONFIG) --libs $(packages)) -pthread

lib_sources := $(sort $(wildcard $(srcdir)/lib/*/*.cpp))
lib_objects := $(patsubst $(srcdir)/lib/%.cpp,$(FUZZ_BUILD)/lib/%.o,$(lib_sources))
targets := $(sort $(patsubst $(srcdir)/tests/fuzz/%.cpp,%,$(wildcard $(srcdir)/tests/fuzz/fuzz_*.cpp)))

all: $(addprefix $(FUZZ_BUILD)/,$(targets))

# Library code gets coverage for the fuzzer but no main; the targets get libFuzzer's.
$(FUZZ_BUILD)/lib/%.o: $(srcdir)/lib/%.cpp
	@mkdir -p $(@D)
	$(CLANGXX) $(cppflags) $(cxxflags) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libaihpc-fuzz.a: $(lib_objects)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/%.o: $(srcdir)/tests/fuzz/%.cpp
	@mkdir -p $(@D)
	$(CLANGXX) $(cppflags) $(cxxflags) -fsanitize=fuzzer -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz_%.o $(FUZZ_BUILD)/libaihpc-fuzz.a
	$(CLANGXX) $(cxxflags) -fsanitize=fuzzer $^ $(libs) -o $@

.PHONY: all
.SECONDARY:
-include $(lib_objects:.o=.d) $(addprefix $(FUZZ_BUILD)/,$(targets:=.d))
