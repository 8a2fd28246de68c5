# lib/container: rules added with the module's sources.
