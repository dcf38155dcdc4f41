"""Networks shared by every method: the backbone (transformer or MLP) and the small flow head."""
