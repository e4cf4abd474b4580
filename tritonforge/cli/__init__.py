"""The `tritonforge` command line: thin commands over the library packages."""
