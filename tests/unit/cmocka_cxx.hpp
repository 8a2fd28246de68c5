// CMocka from C++: its header expects these C headers first.
#pragma once
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <functional>
#include <string>

#include "common/error.hpp"

// Asserts that `body` throws aihpc::Error whose message contains `needle`.
inline void expect_error_containing(const std::function<void()>& body, const std::string& needle) {
    try {
        body();
    } catch (const aihpc::Error& e) {
        if (std::string(e.what()).find(needle) == std::string::npos) {
            print_error("message '%s' lacks '%s'\n", e.what(), needle.c_str());
            fail();
        }
        return;
    }
    print_error("expected an error containing '%s', got none\n", needle.c_str());
    fail();
}
