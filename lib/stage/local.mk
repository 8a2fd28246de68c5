# lib/stage: rules added with the module's sources.
