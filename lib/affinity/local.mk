# lib/affinity: rules added with the module's sources.
