"""The built-in jobs (see ``builtin.toml``): examples to replace with your own."""
