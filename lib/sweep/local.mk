# lib/sweep: rules added with the module's sources.
