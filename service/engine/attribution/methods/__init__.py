"""Attribution methods: one module per method family, registered by name (see `registry`)."""
